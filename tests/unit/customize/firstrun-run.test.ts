// Runs generated first-boot code for real, in a chroot inside fresh namespaces (see _sandbox.ts).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, lstatSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { hostKeysFromFiles, type HostKey } from "../../../src/customize/host-keys.ts";
import type { BootInspection } from "../../../src/customize/inspect.ts";
import { buildPayloads } from "../../../src/customize/payloads.ts";
import { resolveCustomization } from "../../../src/customize/resolve.ts";
import { wifiPsk } from "../../../src/customize/secrets.ts";
import { run, tempDir } from "./_images.ts";
import { buildSandbox, modeIn, readIn, runInSandbox } from "./_sandbox.ts";

const tmp = tempDir();
afterAll(tmp.cleanup);

const SSID = ` Café "Mörkö" $x \`y\` \\z #7 '`;
const PASS = `Ünï 'q' "d" $(rm -rf /) \`reboot\` \\ # end! `;
const PASSWORD = `pässwörd 'q' "d" $(reboot) \`id\` \\ #`;
const CMDLINE = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait quiet\n";
let KEY1: string;
let KEY2: string;
let HOST_KEYS: HostKey[];

beforeAll(() => {
  const key = (t: string, f: string, c: string) => {
    run(["ssh-keygen", "-q", "-t", t, "-N", "", "-C", c, "-f", join(tmp.dir, f)]);
    return readFileSync(join(tmp.dir, `${f}.pub`), "utf8").trim();
  };
  KEY1 = key("ed25519", "k1", "me 'x' \"y\" $HOME `id` ü");
  KEY2 = key("rsa", "k2", "other");
  const files: Record<string, string> = {};
  for (const t of ["ed25519", "rsa"]) {
    key(t, `ssh_host_${t}_key`, "root@old");
    files[`ssh_host_${t}_key`] = readFileSync(join(tmp.dir, `ssh_host_${t}_key`), "utf8");
    files[`ssh_host_${t}_key.pub`] = readFileSync(join(tmp.dir, `ssh_host_${t}_key.pub`), "utf8");
  }
  HOST_KEYS = hostKeysFromFiles(files);
});

const INSPECTION: BootInspection = {
  fatType: "FAT32",
  files: ["cmdline.txt", "config.txt"],
  cmdline: CMDLINE,
  bootDirOnImage: "/boot/firmware",
  bootDirReason: "",
  cloudInit: { used: false, evidence: [] },
};

function glibcCrypt(password: string, setting: string): string {
  return Bun.spawnSync(["perl", "-e", "print crypt($ENV{PW}, $ENV{SETTING})"], { env: { PW: password, SETTING: setting }, stdout: "pipe" }).stdout.toString();
}

/** Put firstrun.sh and the edited cmdline.txt where the board would have them, and run it. */
function prepare(name: string, config: Parameters<typeof resolveCustomization>[0], firstUser: boolean) {
  const root = join(tmp.dir, name);
  const r = resolveCustomization(config, { home: tmp.dir })!;
  const p = buildPayloads(r, { mechanism: "firstrun", inspection: INSPECTION, hostKeys: HOST_KEYS });
  buildSandbox(root, {
    bootDir: "/boot/firmware",
    firstUser: firstUser ? { name: "pi", uid: 1000, groups: ["adm", "sudo", "users"] } : undefined,
    files: {
      "boot/firmware/firstrun.sh": p.files[0].data as string,
      "boot/firmware/cmdline.txt": `${CMDLINE.trimEnd()} ${p.cmdlineAppend}\n`,
      "boot/firmware/config.txt": "auto_initramfs=1\n",
    },
  });
  return { root, r };
}

describe("firstrun.sh, run in a sandbox", () => {
  for (const shell of ["/bin/sh", "/usr/bin/dash", "/usr/bin/bash"]) {
    test(`takes over the first user and applies everything (${shell === "/bin/sh" ? "busybox sh" : shell})`, () => {
      const { root, r } = prepare(`typical-${shell.replace(/\W/g, "")}`, {
        hostname: "myboat",
        user: "skipper",
        password: PASSWORD,
        sshKeys: [KEY1, KEY2],
        wifiSsid: SSID,
        wifiPassword: PASS,
        wifiCountry: "fi",
        timezone: "Europe/Helsinki",
        keyboardLayout: "fi",
        locale: "fi_FI.UTF-8",
        keepHostKeys: true,
      }, true);
      const res = runInSandbox(root, shell, "/boot/firmware/firstrun.sh");
      expect(res.code).toBe(0);
      const log = readIn(root, "var/log/flash-live-firstrun.log");
      expect(res.stdout).toBe(log);
      expect(log).toContain("failed steps: none");

      // hostname and /etc/hosts
      expect(readIn(root, "etc/hostname")).toBe("myboat\n");
      expect(readIn(root, "etc/hosts")).toContain("\n127.0.1.1\tmyboat\n");
      expect(readIn(root, "etc/hosts")).not.toContain("raspberrypi");
      // the first user, renamed with its home, group and sudoers line; the password set from the hash
      expect(readIn(root, "etc/passwd")).toContain("skipper:x:1000:1000:,,,:/home/skipper:/bin/bash\n");
      expect(readIn(root, "etc/passwd")).not.toContain("pi:");
      expect(readIn(root, "etc/group")).toMatch(/^skipper:x:1000:$/m);
      expect(readIn(root, "etc/group")).toMatch(/^sudo:x:27:skipper$/m);
      expect(existsSync(join(root, "home/pi"))).toBe(false);
      expect(readIn(root, "home/skipper/.bashrc")).toBe("# bashrc\n");
      expect(readIn(root, "etc/sudoers.d/010_pi-nopasswd")).toBe("skipper ALL=(ALL) NOPASSWD: ALL\n");
      const shadowHash = readIn(root, "etc/shadow").split("\n").find((l) => l.startsWith("skipper:"))!.split(":")[1];
      expect(shadowHash).toBe(r.user!.passwordHash!);
      expect(glibcCrypt(PASSWORD, shadowHash)).toBe(shadowHash);
      // keys
      expect(readIn(root, "home/skipper/.ssh/authorized_keys")).toBe(`${KEY1}\n${KEY2}\n`);
      expect(modeIn(root, "home/skipper/.ssh/authorized_keys")).toEqual({ mode: 0o600, uid: 1000, gid: 1000 });
      expect(modeIn(root, "home/skipper/.ssh")).toEqual({ mode: 0o700, uid: 1000, gid: 1000 });
      expect(readIn(root, "etc/ssh/sshd_config.d/01-flash-live.conf")).toBe("PasswordAuthentication yes\n");
      expect(readIn(root, "var/log/systemctl.calls")).toContain("enable ssh.service\n");
      // Wi-Fi: no NetworkManager here, so wpa_supplicant.conf, the PSK only, mode 600
      const wpa = readIn(root, "etc/wpa_supplicant/wpa_supplicant.conf");
      expect(wpa).toContain(`\tssid=${Buffer.from(SSID).toString("hex")}\n\tpsk=${wifiPsk(PASS, SSID)}\n`);
      expect(wpa).toContain("country=FI\n");
      expect(wpa).not.toContain("Ünï");
      expect(modeIn(root, "etc/wpa_supplicant/wpa_supplicant.conf").mode).toBe(0o600);
      // time zone, keyboard, locale
      expect(lstatSync(join(root, "etc/localtime")).isSymbolicLink()).toBe(true);
      expect(readlinkSync(join(root, "etc/localtime"))).toBe("/usr/share/zoneinfo/Europe/Helsinki");
      expect(readIn(root, "etc/default/keyboard")).toContain('XKBLAYOUT="fi"\n');
      expect(readIn(root, "etc/default/locale")).toBe("LANG=fi_FI.UTF-8\n");
      // host keys carried over
      for (const k of HOST_KEYS) {
        expect(readIn(root, `etc/ssh/ssh_host_${k.type}_key`)).toBe(k.privateKey);
        expect(modeIn(root, `etc/ssh/ssh_host_${k.type}_key`).mode).toBe(0o600);
        expect(readIn(root, `etc/ssh/ssh_host_${k.type}_key.pub`)).toBe(`${k.publicKey}\n`);
        expect(modeIn(root, `etc/ssh/ssh_host_${k.type}_key.pub`).mode).toBe(0o644);
      }
      // cleaned up: the script is gone and cmdline.txt keeps only the regulatory domain
      expect(existsSync(join(root, "boot/firmware/firstrun.sh"))).toBe(false);
      expect(readIn(root, "boot/firmware/cmdline.txt")).toBe(`${CMDLINE.trimEnd()} cfg80211.ieee80211_regdom=FI\n`);
      // the log names steps, never the secrets
      expect(log).not.toContain(r.user!.passwordHash!);
      expect(log).not.toContain(wifiPsk(PASS, SSID));
    }, 60_000);
  }

  test("no first user: one is created with sudo; keys only locks the password and allows sudo without one", () => {
    const { root } = prepare("create", { user: "newbie", sshKeys: [KEY2] }, false);
    const res = runInSandbox(root, "/usr/bin/dash", "/boot/firmware/firstrun.sh");
    expect(res.code).toBe(0);
    expect(res.stdout).toContain("failed steps: none");
    expect(readIn(root, "etc/passwd")).toMatch(/^newbie:x:1000:1000::\/home\/newbie:\/bin\/bash$/m);
    expect(readIn(root, "etc/group")).toMatch(/^sudo:x:27:newbie$/m);
    expect(readIn(root, "etc/shadow")).toMatch(/^newbie:!/m);
    expect(readIn(root, "etc/sudoers.d/flash-live-nopasswd")).toBe("newbie ALL=(ALL) NOPASSWD:ALL\n");
    expect(modeIn(root, "etc/sudoers.d/flash-live-nopasswd").mode).toBe(0o440);
    expect(readIn(root, "home/newbie/.ssh/authorized_keys")).toBe(`${KEY2}\n`);
    expect(readIn(root, "etc/ssh/sshd_config.d/01-flash-live.conf")).toBe("PasswordAuthentication no\n");
    expect(readIn(root, "boot/firmware/cmdline.txt")).toBe(CMDLINE);
  }, 60_000);

  test("cloud-init's bootcmd renames the first user the same way, once, and leaves creation to cloud-init", () => {
    const r = resolveCustomization({ user: "skipper", password: "x" }, { home: join(tmp.dir, "none") })!;
    const files = buildPayloads(r, { mechanism: "cloud-init", inspection: INSPECTION }).files;
    const [, cmd] = parse(files[0].data as string).bootcmd as string[][];
    // cloud-init-per once NAME sh -c SCRIPT sh skipper  ->  run the part after the NAME.
    const root = join(tmp.dir, "bootcmd");
    buildSandbox(root, { bootDir: "/boot/firmware", firstUser: { name: "pi", uid: 1000, groups: ["sudo"] }, files: { "tmp/bootcmd.sh": cmd[5] } });
    const argv = cmd.slice(3);
    writeFileSync(join(root, "tmp/run.sh"), `exec ${argv.map((a, i) => (i === 2 ? '"$(cat /tmp/bootcmd.sh)"' : a)).join(" ")}\n`);
    expect(runInSandbox(root, "/bin/sh", "/tmp/run.sh").code).toBe(0);
    expect(readIn(root, "etc/passwd")).toContain("skipper:x:1000:1000:,,,:/home/skipper:/bin/bash\n");
    expect(readIn(root, "etc/sudoers.d/010_pi-nopasswd")).toBe("skipper ALL=(ALL) NOPASSWD: ALL\n");
    // Again (bootcmd runs every boot; cloud-init-per guards it, the script is idempotent anyway).
    expect(runInSandbox(root, "/bin/sh", "/tmp/run.sh").code).toBe(0);
    expect(readIn(root, "etc/passwd").match(/^skipper:/gm)?.length).toBe(1);

    const empty = join(tmp.dir, "bootcmd-empty");
    buildSandbox(empty, { bootDir: "/boot/firmware", files: { "tmp/bootcmd.sh": cmd[5] } });
    writeFileSync(join(empty, "tmp/run.sh"), readFileSync(join(root, "tmp/run.sh")));
    expect(runInSandbox(empty, "/bin/sh", "/tmp/run.sh").code).toBe(0);
    expect(readIn(empty, "etc/passwd")).not.toContain("skipper");
  }, 60_000);
});
