import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { log, run, since } from "./_run.ts";
import { ASSEMBLE_DISK, assembleDisk, idsFor } from "./assemble-disk.ts";
import { BOARD_KERNEL_ARGS, type BoardImage } from "./build-image.ts";
import { hashOf, ROOTFS_DIR } from "./build-tree.ts";
import { ensureCached } from "./cache.ts";
import { type Packed, type WithForms, withForms } from "./compress.ts";
import { ensureSuiteKey } from "./paths.ts";
import { BOARD_MARKER_PATH, BOARD_MARKER_TEXT, BOARD_USERS, IMAGES, type ImageName } from "./recipes.ts";

/**
 * arm64 light boards (issue 2, "an arm64 board under qemu-system-aarch64 -M virt"): the light
 * recipe's layout and boot (busybox init + rootfs/light's rcS, FAT bootfs read by the firmware step)
 * with Debian trixie's arm64 packages. Built with no emulation at all: `debootstrap --foreign` only
 * downloads and checks the packages, every .deb is then unpacked with the host's dpkg-deb (no
 * maintainer script runs: users, sshd's settings and module lists are written here), and the
 * initramfs is a small busybox one made here. The disk itself is assembled as the x86 images'
 * (assemble-disk.ts).
 */
export const ARM64_PACKAGES = [
  "linux-image-arm64", "openssh-server", "busybox-static", "kmod", "sudo", "e2fsprogs", "dosfstools",
  "fdisk", "iproute2", "procps", "xz-utils", "zstd", "util-linux", "findutils",
];
const SUITE = "trixie";
const MIRROR = "http://deb.debian.org/debian";
/** Modules the initramfs loads, with their dependencies (modules.dep): the root disk and its fs (ext4 asks for crc32c through the crypto API, not modules.dep). */
const INITRAMFS_MODULES = ["virtio_blk", "crc32c_generic", "ext4"];
const MiB = 1024 * 1024;

/** The arm64 build of a light image (L, L2): same marker, its own cache entry `<name>-arm64`. */
export async function ensureArm64Image<F extends Packed = never>(name: ImageName, ...forms: F[]): Promise<WithForms<BoardImage, F>> {
  const recipe = IMAGES[name];
  if (recipe.flavor !== "light") throw new Error(`arm64 boards exist for the light images only, not ${name}`);
  const tree = await ensureArm64Tree();
  const key = hashOf(tree.key, readFileSync(import.meta.path, "utf8"), readFileSync(ASSEMBLE_DISK, "utf8"), JSON.stringify(recipe), BOARD_KERNEL_ARGS, { files: join(ROOTFS_DIR, "light") });
  const t0 = performance.now();
  const { dir, built } = await ensureCached("images", `${name}-arm64`, key, async (tmp, final) => {
    log(`building image ${name}-arm64`);
    const info = await buildImage(name, key, tree.path, tmp, final);
    info.buildSeconds = since(t0);
    writeFileSync(join(tmp, "info.json"), `${JSON.stringify(info, null, 2)}\n`);
    log(`image ${name}-arm64 built in ${info.buildSeconds} s (raw ${(info.sizes.raw / MiB).toFixed(1)} MiB)`);
  });
  const info = JSON.parse(readFileSync(join(dir, "info.json"), "utf8")) as BoardImage;
  return withForms({ ...info, buildSeconds: built ? info.buildSeconds : 0 }, forms);
}

// --- internal ---

async function ensureArm64Tree(): Promise<{ path: string; key: string }> {
  const { publicKey } = await ensureSuiteKey();
  const key = hashOf(SUITE, MIRROR, ARM64_PACKAGES.join(","), readFileSync(import.meta.path, "utf8"), { files: join(ROOTFS_DIR, "common") }, publicKey);
  const t0 = performance.now();
  const { dir, built } = await ensureCached("trees", "arm64-light", key, async (tmp) => {
    log(`building tree arm64-light-${key}`);
    const root = join(tmp, "root");
    await run(["debootstrap", "--foreign", "--arch=arm64", "--variant=minbase", `--include=${ARM64_PACKAGES.join(",")}`, SUITE, root, MIRROR]);
    const archives = join(root, "var/cache/apt/archives");
    const debs = readdirSync(archives).filter((f) => f.endsWith(".deb")).sort();
    // As debootstrap extracts: through tar with --keep-directory-symlink, so that /bin -> usr/bin
    // (merged /usr) stays a link when a package still ships files under /bin.
    for (const deb of debs) await run(["sh", "-c", 'dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" --keep-directory-symlink -f -', "-", join(archives, deb), root]);
    // The first stage leaves /proc as a link to the host's /proc (it cannot mount one here).
    await run(["sh", "-c", 'rm -rf "$1"/debootstrap "$1"/var/cache/apt/archives/*.deb "$1"/proc && mkdir -m 0555 "$1"/proc && ln -sf ../proc/self/mounts "$1"/etc/mtab', "-", root]);
    log(`arm64 tree: ${debs.length} packages unpacked in ${since(t0)} s`);
    await configureTree(root, publicKey);
  });
  if (built) log(`tree arm64-light-${key} built in ${since(t0)} s`);
  return { path: join(dir, "root"), key };
}

/** What Debian's maintainer scripts would have done, as far as a light board needs it. */
async function configureTree(root: string, publicKey: string): Promise<void> {
  await run(["cp", "-a", "--no-preserve=ownership", `${ROOTFS_DIR}/common/.`, `${root}/`]);
  await run(["cp", "-a", "--no-preserve=ownership", `${ROOTFS_DIR}/light/.`, `${root}/`]);
  await run(["chmod", "0440", `${root}/etc/sudoers.d/010_pi-nopasswd`]);

  // Accounts: base-passwd's masters, then the board users and sshd's privilege separation user.
  const passwd = readFileSync(join(root, "usr/share/base-passwd/passwd.master"), "utf8");
  let group = readFileSync(join(root, "usr/share/base-passwd/group.master"), "utf8");
  for (const [g, gid] of [["sudo", 27], ["sshd", 101], ["pi", 1000], ["strict", 1001]] as const) {
    if (!new RegExp(`^${g}:`, "m").test(group)) group += `${g}:x:${gid}:\n`;
  }
  group = group.replace(/^sudo:([^:]*):27:.*$/m, "sudo:$1:27:pi,strict").replace(/^adm:([^:]*):4:.*$/m, "adm:$1:4:pi");
  writeFileSync(join(root, "etc/passwd"), `${passwd.replace(/^root:\*:/m, "root:x:")}sshd:x:101:101::/run/sshd:/usr/sbin/nologin\npi:x:1000:1000::/home/pi:/bin/bash\nstrict:x:1001:1001::/home/strict:/bin/bash\n`);
  writeFileSync(join(root, "etc/group"), group);
  const hash = async (pw: string) => (await run(["openssl", "passwd", "-6", "-stdin"], { stdin: pw })).stdout.trim();
  const shadow = passwd.split("\n").filter(Boolean).map((l) => `${l.split(":")[0]}:*:20000:0:99999:7:::`);
  shadow.push("sshd:!:20000::::::", `pi:${await hash(BOARD_USERS.pi.password)}:20000:0:99999:7:::`, `strict:${await hash(BOARD_USERS.strict.password)}:20000:0:99999:7:::`);
  writeFileSync(join(root, "etc/shadow"), `${shadow.join("\n")}\n`, { mode: 0o640 });
  writeFileSync(join(root, "etc/gshadow"), group.split("\n").filter(Boolean).map((l) => `${l.split(":")[0]}:*::${l.split(":")[3] ?? ""}`).join("\n") + "\n", { mode: 0o640 });
  for (const [home, owner] of [["root", "0:0"], ["home/pi", "1000:1000"], ["home/strict", "1001:1001"]] as const) {
    await run(["install", "-d", "-m", "0700", "-o", owner.split(":")[0]!, "-g", owner.split(":")[1]!, `${root}/${home}`, `${root}/${home}/.ssh`]);
    writeFileSync(`${root}/${home}/.ssh/authorized_keys`, `${publicKey}\n`, { mode: 0o600 });
    await run(["chown", owner, `${root}/${home}/.ssh/authorized_keys`]);
  }
  // No PAM stack was configured (pam-auth-update never ran): sshd checks keys and shadow itself.
  mkdirSync(join(root, "etc/ssh/sshd_config.d"), { recursive: true });
  writeFileSync(join(root, "etc/ssh/sshd_config.d/flash-live-board.conf"), "UsePAM no\n");
  if (!existsSync(join(root, "etc/ssh/sshd_config"))) await run(["cp", join(root, "usr/share/openssh/sshd_config"), join(root, "etc/ssh/sshd_config")]);
  // sudo's PAM stack includes common-*, which pam-auth-update writes: its result for pam_unix alone.
  const stack = (type: string, first: string, args = "") => `${type}\t${first}\tpam_unix.so${args}\n${type}\trequisite\tpam_deny.so\n${type}\trequired\tpam_permit.so\n`;
  const session = "session\t[default=1]\tpam_permit.so\nsession\trequisite\tpam_deny.so\nsession\trequired\tpam_permit.so\nsession\trequired\tpam_unix.so\n";
  for (const [file, text] of Object.entries({
    "common-auth": stack("auth", "[success=1 default=ignore]", " nullok"),
    "common-account": stack("account", "[success=1 new_authtok_reqd=done default=ignore]"),
    "common-password": stack("password", "[success=1 default=ignore]", " obscure yescrypt"),
    "common-session": session,
    "common-session-noninteractive": session,
  })) writeFileSync(join(root, "etc/pam.d", file), text);
  writeFileSync(join(root, "etc/resolv.conf"), "nameserver 10.0.2.3\n");

  // PID 1 is busybox init; only the modules a board uses; module lists made here (no depmod ran).
  const version = readdirSync(join(root, "usr/lib/modules"))[0]!;
  await run(["sh", "-c", [
    'cd "$1"',
    "rm -f usr/sbin/init usr/sbin/reboot usr/sbin/halt usr/sbin/poweroff usr/sbin/shutdown usr/bin/systemctl usr/bin/journalctl usr/bin/udevadm usr/bin/loginctl usr/bin/busctl usr/bin/systemd*",
    "for a in init reboot halt poweroff; do ln -s ../bin/busybox usr/sbin/$a; done",
    // update-alternatives never ran: awk is mawk's link to make.
    "ln -sf mawk usr/bin/awk && ln -sf mawk usr/bin/nawk",
    "rm -rf usr/share/doc/* usr/share/man/* usr/share/locale/* usr/share/zoneinfo var/lib/apt/lists/* usr/lib/linux-image-* usr/lib/systemd usr/lib/udev",
    "cd usr/lib/modules/*/kernel",
    "find . -name '*.ko*' | grep -vE '^\\./(fs|lib|crypto|block)/|^\\./drivers/(block|nvme|mmc|virtio|scsi/(sd_mod|scsi_mod|scsi_common|virtio_scsi)|net/(virtio_net|net_failover)|char/hw_random/virtio)|^\\./net/core/failover' | xargs rm -f",
  ].join(" && "), "-", root]);
  await run(["depmod", "-b", root, version]);
  await makeInitramfs(root, version);
}

/** A busybox initramfs: load the disk and ext4 modules, mount root= read-only, switch_root. */
async function makeInitramfs(root: string, version: string): Promise<void> {
  const work = join(root, "..", "initramfs");
  await run(["rm", "-rf", work]);
  for (const d of ["bin", "dev", "proc", "sys", "root", "mods"]) mkdirSync(join(work, d), { recursive: true });
  await run(["cp", join(root, "usr/bin/busybox"), join(work, "bin/busybox")]);
  const modDir = join(root, "usr/lib/modules", version);
  const dep = new Map<string, string[]>();
  for (const line of readFileSync(join(modDir, "modules.dep"), "utf8").split("\n")) {
    const [mod, deps] = line.split(":");
    if (mod) dep.set(mod, (deps ?? "").trim().split(/\s+/).filter(Boolean));
  }
  const order: string[] = [];
  const visit = (path: string) => {
    if (order.includes(path)) return;
    for (const d of dep.get(path) ?? []) visit(d);
    order.push(path);
  };
  for (const m of INITRAMFS_MODULES) {
    const path = [...dep.keys()].find((p) => p.split("/").pop()!.replace(/\.ko(\.xz)?$/, "") === m);
    if (!path) throw new Error(`arm64 initramfs: module ${m} not in modules.dep`);
    visit(path);
  }
  const names: string[] = [];
  for (const p of order) {
    const name = p.split("/").pop()!.replace(/\.xz$/, "");
    names.push(name);
    await run(["sh", "-c", 'case "$1" in *.xz) xz -dc "$1" ;; *) cat "$1" ;; esac > "$2"', "-", join(modDir, p), join(work, "mods", name)]);
  }
  writeFileSync(join(work, "init"), [
    "#!/bin/busybox sh",
    "/bin/busybox --install -s /bin",
    "mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev",
    ...names.map((n) => `insmod /mods/${n}`),
    'root=""',
    'for a in $(cat /proc/cmdline); do case "$a" in root=*) root=${a#root=} ;; esac; done',
    'i=0; while [ ! -b "$root" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done',
    'mount -t ext4 -o ro "$root" /root || { echo "initramfs: cannot mount root $root"; exec sh; }',
    "mount --move /dev /root/dev; umount /proc /sys",
    "exec switch_root /root /sbin/init",
    "",
  ].join("\n"), { mode: 0o755 });
  await run(["sh", "-c", 'cd "$1" && find . | cpio -o -H newc --quiet | gzip -1 > "$2"', "-", work, join(root, "boot/initrd.img")]);
  await run(["rm", "-rf", work]);
}

async function buildImage(name: ImageName, key: string, treePath: string, tmp: string, finalDir: string): Promise<BoardImage> {
  const recipe = IMAGES[name];
  const ids = idsFor(`${name}-arm64`);
  const hostname = `board-${recipe.marker.toLowerCase()}`;
  const root = join(tmp, "root");
  await run(["cp", "-a", `${treePath}/.`, root]);
  writeFileSync(join(root, "etc/image-id"), `${recipe.marker}\n`);
  writeFileSync(join(root, BOARD_MARKER_PATH.slice(1)), BOARD_MARKER_TEXT);
  writeFileSync(join(root, "etc/hostname"), `${hostname}\n`);
  writeFileSync(join(root, "etc/hosts"), `127.0.0.1\tlocalhost\n127.0.1.1\t${hostname}\n`);
  writeFileSync(join(root, "etc/machine-id"), `${ids.machineId}\n`);
  for (const [type, bits] of [["ed25519", []], ["ecdsa", []], ["rsa", ["-b", "3072"]]] as const) {
    await run(["ssh-keygen", "-q", "-t", type, ...bits, "-N", "", "-C", `root@${hostname}`, "-f", join(root, `etc/ssh/ssh_host_${type}_key`)]);
  }
  writeFileSync(join(root, "etc/fstab"), `proc /proc proc defaults 0 0\nPARTUUID=${ids.diskId}-01 /boot/firmware vfat defaults 0 2\n`);
  mkdirSync(join(root, "boot/firmware"), { recursive: true });

  const bootDir = join(tmp, "bootfs");
  mkdirSync(bootDir);
  const kernel = readdirSync(join(root, "boot")).find((f) => f.startsWith("vmlinuz-"));
  if (!kernel) throw new Error(`no arm64 kernel in ${root}/boot`);
  await run(["mv", join(root, "boot", kernel), join(bootDir, "vmlinuz")]);
  await run(["mv", join(root, "boot/initrd.img"), join(bootDir, "initrd.img")]);
  // The initramfs finds the root by device name (busybox cannot resolve PARTUUID=).
  const cmdline = `console=ttyAMA0 root=/dev/vda2 rootfstype=ext4 rootwait ${BOARD_KERNEL_ARGS}`;
  writeFileSync(join(bootDir, "cmdline.txt"), `${cmdline}\n`);
  writeFileSync(join(bootDir, "config.txt"), "[all]\nkernel=vmlinuz\ninitramfs initrd.img followkernel\n");

  const raw = join(tmp, `${name}-arm64.img`);
  const disk = await assembleDisk({ raw, diskMiB: recipe.diskMiB, bootMiB: recipe.bootMiB, table: "dos", bootDir, rootDir: root, tmp, ids });
  const rawFinal = join(finalDir, `${name}-arm64.img`);
  return {
    name, marker: recipe.marker, hostname, key, dir: finalDir,
    raw: rawFinal, sizes: disk.sizes, sha256: disk.sha256, table: "dos", partuuid: { boot: `${ids.diskId}-01`, root: `${ids.diskId}-02` }, partitions: disk.partitions, cmdline, buildSeconds: 0,
  };
}
