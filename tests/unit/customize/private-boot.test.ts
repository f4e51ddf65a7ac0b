// The bootcmd that makes the cloud-init seed's boot partition root-only (private-boot.sh): its place
// in user-data, its fstab edit run by real shells (dash + mawk as on Debian and Raspberry Pi OS,
// busybox sh + awk), and the whole command in a sandbox where mount, umount and systemctl record
// what they are asked (the fakes: this machine's kernel has no vfat, FIELD-NOTES §2).
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import privateBootSh from "../../../src/customize/private-boot.sh" with { type: "text" };
import type { BootInspection } from "../../../src/customize/inspect.ts";
import { buildPayloads } from "../../../src/customize/payloads.ts";
import { resolveCustomization } from "../../../src/customize/resolve.ts";
import { cloudInitSchema } from "./_cloud-init.ts";
import { run, tempDir } from "./_images.ts";
import { buildSandbox, runInSandbox } from "./_sandbox.ts";

const tmp = tempDir();
afterAll(tmp.cleanup);

const INSPECTION: BootInspection = {
  fatType: "FAT32",
  label: "bootfs",
  files: ["cmdline.txt", "config.txt"],
  cmdline: "console=tty1 root=PARTUUID=4e639091-02 rootwait\n",
  bootDirOnImage: "/boot/firmware",
  bootDirReason: "config.txt has auto_initramfs=1",
  cloudInit: { used: false, evidence: [] },
};

function bootcmd(config: Record<string, unknown>, inspection: BootInspection = INSPECTION): (string | string[])[] {
  const r = resolveCustomization(config, { home: join(tmp.dir, "none") })!;
  const files = buildPayloads(r, { mechanism: "cloud-init", inspection }).files;
  return parse(files[0]!.data as string).bootcmd;
}

describe("cloud-init user-data: the boot partition becomes root-only", () => {
  test("after the take-over of the first user, once, the script's mount points as arguments", () => {
    const cmds = bootcmd({ user: "skipper", password: "x", hostname: "boat" });
    expect(cmds.map((c) => (typeof c === "string" ? c : c[2]))).toEqual(["set -e", "flash-live-take-over-user", "flash-live-private-boot"]);
    const pb = cmds[2] as string[];
    expect(pb.slice(0, 5)).toEqual(["cloud-init-per", "once", "flash-live-private-boot", "sh", "-c"]);
    expect(pb[5]).toBe(`${privateBootSh}\nprivate_boot "$@"`);
    expect(pb.slice(6)).toEqual(["sh", "/boot/firmware", "/boot"]);
    run(["dash", "-n", "-c", pb[5]!]);
  });

  test("also without a user; an image whose boot partition is /boot looks there first", () => {
    const cmds = bootcmd({ hostname: "boat" }, { ...INSPECTION, bootDirOnImage: "/boot" });
    expect(cmds).toHaveLength(2);
    expect(cmds[0]).toBe("set -e");
    expect((cmds[1] as string[]).slice(6)).toEqual(["sh", "/boot", "/boot/firmware"]);
  });

  test("valid for cloud-init's schema", () => {
    const r = resolveCustomization({ user: "skipper", password: "x", hostname: "boat" }, { home: join(tmp.dir, "none") })!;
    const p = join(tmp.dir, "user-data");
    writeFileSync(p, buildPayloads(r, { mechanism: "cloud-init", inspection: INSPECTION }).files[0]!.data);
    const res = cloudInitSchema()(p);
    expect(res.output).toContain("Valid cloud-config");
  }, 60_000);
});

// --- fstab ---

const FSTAB = [
  "# <file system> <mount point> <type> <options> <dump> <pass>",
  "proc            /proc           proc    defaults          0       0",
  "# PARTUUID=4e639091-01  /boot/firmware  vfat  defaults  0  2",
  "PARTUUID=4e639091-01  /boot/firmware  vfat    defaults          0       2",
  "PARTUUID=4e639091-02  /               ext4    defaults,noatime  0       1",
  "",
].join("\n");

const BUSYBOX_BIN = join(tmp.dir, "busybox-bin");
mkdirSync(BUSYBOX_BIN);
for (const a of ["sh", "awk", "cat"]) symlinkSync("/bin/busybox", join(BUSYBOX_BIN, a));

const SHELLS = {
  "dash + mawk": { sh: "/usr/bin/dash", path: "/usr/bin:/bin" },
  "busybox sh + awk": { sh: join(BUSYBOX_BIN, "sh"), path: BUSYBOX_BIN },
} as const;

function fstabPrivate(shell: keyof typeof SHELLS, fstab: string, mountPoint: string): string {
  const f = join(tmp.dir, "fstab");
  writeFileSync(f, fstab);
  const { sh, path } = SHELLS[shell];
  const p = Bun.spawnSync([sh, "-c", `${privateBootSh}\nfl_fstab_private "$1" "$2"`, "sh", f, mountPoint], { env: { PATH: path }, stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${shell}: exit ${p.exitCode}: ${p.stderr.toString()}`);
  return p.stdout.toString();
}

describe.each(Object.keys(SHELLS) as (keyof typeof SHELLS)[])("fl_fstab_private under %s", (shell) => {
  test("the boot line's options get the masks; comments, other lines and the layout stay", () => {
    const out = fstabPrivate(shell, FSTAB, "/boot/firmware");
    const lines = out.split("\n");
    const want = FSTAB.split("\n");
    want[3] = "PARTUUID=4e639091-01\t/boot/firmware\tvfat\tdefaults,fmask=0077,dmask=0077\t0\t2";
    expect(lines).toEqual(want);
  });

  test.each([
    ["LABEL=bootfs /boot vfat defaults 0 2", "LABEL=bootfs\t/boot\tvfat\tdefaults,fmask=0077,dmask=0077\t0\t2"],
    ["/dev/mmcblk0p1 /boot vfat fmask=0022,dmask=0022,noatime 0 2", "/dev/mmcblk0p1\t/boot\tvfat\tnoatime,fmask=0077,dmask=0077\t0\t2"],
    ["UUID=A1B2-C3D4\t/boot\tvfat\tumask=0077,ro\t0\t2", "UUID=A1B2-C3D4\t/boot\tvfat\tro,fmask=0077,dmask=0077\t0\t2"],
    ["/dev/sda1 /boot vfat", "/dev/sda1\t/boot\tvfat\tdefaults,fmask=0077,dmask=0077"],
    ["  /dev/sda1   /boot   vfat   rw   ", "/dev/sda1\t/boot\tvfat\trw,fmask=0077,dmask=0077"],
  ])("%j", (line, want) => {
    expect(fstabPrivate(shell, `${line}\n`, "/boot")).toBe(`${want}\n`);
  });

  test("no line for the mount point, or one for a longer path: unchanged, byte for byte", () => {
    const without = FSTAB.replace(/^PARTUUID=4e639091-01 .*\n/m, "");
    expect(fstabPrivate(shell, without, "/boot/firmware")).toBe(without);
    expect(fstabPrivate(shell, FSTAB, "/boot")).toBe(FSTAB);
    expect(fstabPrivate(shell, "", "/boot")).toBe("");
    expect(fstabPrivate(shell, "LABEL=x /boot vfat defaults", "/boot")).toBe("LABEL=x\t/boot\tvfat\tdefaults,fmask=0077,dmask=0077\n");
  });
});

// --- the whole command, in a sandbox ---

const STUBS: Record<string, string> = {
  // umount MP: the mount disappears from the (fake) /proc/self/mounts; /tmp/busy makes it fail.
  "usr/bin/umount": `#!/bin/sh
echo "umount $*" >>/var/log/calls
[ -e /tmp/busy ] && { echo "umount: $1: target is busy." >&2; exit 32; }
awk -v mp="$1" '$2 != mp' /proc/self/mounts >/tmp/m && cat /tmp/m >/proc/self/mounts
`,
  // mount -t vfat -o OPTS DEV MP, or mount MP (from fstab): the mount appears.
  "usr/bin/mount": `#!/bin/sh
echo "mount $*" >>/var/log/calls
if [ "$1" = -t ]; then echo "$5 $6 vfat $4 0 0" >>/proc/self/mounts; exit 0; fi
awk -v mp="$1" '!/^#/ && $2 == mp { print $1, $2, $3, "rw," $4, 0, 0; f = 1 } END { exit !f }' /etc/fstab >>/proc/self/mounts
`,
  "usr/bin/systemctl": '#!/bin/sh\necho "systemctl $*" >>/var/log/calls\n',
};

const MOUNTED = "/dev/mmcblk0p1 /boot/firmware vfat rw,relatime,fmask=0022,dmask=0022,codepage=437,iocharset=ascii,shortname=mixed,errors=remount-ro 0 0\n";
const ROOT_MOUNT = "/dev/mmcblk0p2 / ext4 rw,noatime 0 0\n";

function sandbox(name: string, files: Record<string, string>, opts: { systemd?: boolean } = {}): string {
  const root = join(tmp.dir, name);
  buildSandbox(root, { bootDir: "/boot/firmware", files: { ...STUBS, ...files, "var/log/calls": "" } });
  // sh is dash, as on Debian and Raspberry Pi OS (busybox sh would run its own mount/umount
  // applets instead of the fakes).
  rmSync(join(root, "bin/sh"));
  symlinkSync("/usr/bin/dash", join(root, "bin/sh"));
  for (const p of Object.keys(STUBS)) chmodSync(join(root, p), 0o755);
  if (opts.systemd) mkdirSync(join(root, "run/systemd/system"), { recursive: true });
  // The bootcmd line exactly as cloud-init's shellify writes it.
  const [, , cmd] = bootcmd({ user: "skipper", password: "x" }) as string[][];
  const argv = cmd!.slice(3).map((a) => `'${a.replaceAll("'", "'\\''")}'`);
  writeFileSync(join(root, "tmp/run.sh"), `PATH=/usr/bin:/bin\n${argv.join(" ")}\n`);
  return root;
}

const runIt = (root: string) => runInSandbox(root, "/usr/bin/dash", "/tmp/run.sh");

const read = (root: string, p: string) => readFileSync(join(root, p), "utf8");

describe("private_boot in a sandbox (fake mount/umount/systemctl)", () => {
  test("mounted with the seed: fstab edited, systemd told, mounted again with root-only masks", () => {
    const root = sandbox("mounted", { "etc/fstab": FSTAB, "proc/self/mounts": ROOT_MOUNT + MOUNTED, "boot/firmware/user-data": "#cloud-config\n" }, { systemd: true });
    const r = runIt(root);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(read(root, "etc/fstab")).toContain("PARTUUID=4e639091-01\t/boot/firmware\tvfat\tdefaults,fmask=0077,dmask=0077\t0\t2\n");
    expect(read(root, "var/log/calls").split("\n")).toEqual([
      "systemctl daemon-reload",
      "umount /boot/firmware",
      "mount -t vfat -o rw,relatime,codepage=437,iocharset=ascii,shortname=mixed,errors=remount-ro,fmask=0077,dmask=0077 /dev/mmcblk0p1 /boot/firmware",
      "",
    ]);
    // Once is enough: a second run sees the masks and mounts nothing.
    writeFileSync(join(root, "var/log/calls"), "");
    expect(runIt(root).code).toBe(0);
    expect(read(root, "var/log/calls")).toBe("systemctl daemon-reload\n");
    expect(read(root, "etc/fstab").match(/fmask/g)).toHaveLength(1);
  }, 30_000);

  test("busy: fstab edited, the live mount left for the next boot, said on stderr, not a failure", () => {
    const root = sandbox("busy", { "etc/fstab": FSTAB, "proc/self/mounts": MOUNTED, "boot/firmware/user-data": "", "tmp/busy": "" });
    const r = runIt(root);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("/boot/firmware is busy: it becomes root-only at the next boot");
    expect(read(root, "etc/fstab")).toContain("defaults,fmask=0077,dmask=0077");
    expect(read(root, "proc/self/mounts")).toBe(MOUNTED);
  }, 30_000);

  test("not mounted yet: the fstab line (a /boot one here) gets the masks and mounts it", () => {
    const fstab = "LABEL=bootfs /boot vfat defaults 0 2\n/dev/vda2 / ext4 defaults 0 1\n";
    const root = sandbox("unmounted", { "etc/fstab": fstab, "proc/self/mounts": ROOT_MOUNT });
    const r = runIt(root);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(read(root, "etc/fstab")).toBe("LABEL=bootfs\t/boot\tvfat\tdefaults,fmask=0077,dmask=0077\t0\t2\n/dev/vda2 / ext4 defaults 0 1\n");
    expect(read(root, "var/log/calls")).toBe("mount /boot\n");
    expect(read(root, "proc/self/mounts")).toContain("LABEL=bootfs /boot vfat rw,defaults,fmask=0077,dmask=0077");
  }, 30_000);

  test("no FAT boot partition anywhere: nothing changed, said on stderr, not a failure", () => {
    const fstab = "/dev/vda2 / ext4 defaults 0 1\n";
    const root = sandbox("none", { "etc/fstab": fstab, "proc/self/mounts": ROOT_MOUNT });
    const r = runIt(root);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("no FAT boot partition at /boot/firmware /boot");
    expect(read(root, "etc/fstab")).toBe(fstab);
    expect(read(root, "var/log/calls")).toBe("");
  }, 30_000);
});
