// A throwaway root to run a generated firstrun.sh for real: busybox for the shell tools, Debian's
// own getent/useradd/usermod/groupmod/chpasswd (copied with their libraries), and a recording stub
// for systemctl (the one fake: there is no systemd to talk to). It runs under chroot inside fresh
// UTS/mount/net/IPC/PID namespaces, so `hostname` and every write stay inside the sandbox.
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { run } from "./_images.ts";

// No rfkill: the script must cope without it (and must never touch this machine's radios).
const APPLETS = "sh awk grep cut cat mv rm chmod chown ln mkdir id hostname printf date sync tr sed echo tee true false test [ ls od head sleep".split(" ");
const REAL = ["/usr/bin/getent", "/usr/sbin/useradd", "/usr/sbin/usermod", "/usr/sbin/groupmod", "/usr/sbin/chpasswd", "/usr/bin/dash", "/usr/bin/bash"];

export interface SandboxUser {
  name: string;
  uid: number;
  groups: string[];
}

export function buildSandbox(root: string, opts: { firstUser?: SandboxUser; bootDir: string; files: Record<string, string> }): void {
  for (const d of ["bin", "usr/bin", "usr/sbin", "etc/ssh/sshd_config.d", "etc/sudoers.d", "etc/default", "var/log", "run", "home", "tmp", "usr/share/zoneinfo/Europe", "proc", "dev"]) {
    mkdirSync(join(root, d), { recursive: true });
  }
  chmodSync(join(root, "tmp"), 0o1777);
  copyFileSync("/bin/busybox", join(root, "bin/busybox"));
  chmodSync(join(root, "bin/busybox"), 0o755);
  for (const a of APPLETS) if (!existsSync(join(root, "bin", a))) symlinkSync("busybox", join(root, "bin", a));
  for (const bin of REAL) copyWithLibs(bin, root);
  copyFileSync("/usr/share/zoneinfo/Europe/Helsinki", join(root, "usr/share/zoneinfo/Europe/Helsinki"));
  copyFileSync("/etc/login.defs", join(root, "etc/login.defs"));
  // The one fake: systemctl records what it was asked and says nothing is enabled.
  writeFileSync(join(root, "usr/bin/systemctl"), '#!/bin/sh\necho "$*" >>/var/log/systemctl.calls\ncase $1 in -q|is-enabled) exit 1;; esac\nexit 0\n');
  chmodSync(join(root, "usr/bin/systemctl"), 0o755);

  const u = opts.firstUser;
  const groups = [["root", 0], ["adm", 4], ["sudo", 27], ["users", 100], ...(u ? [[u.name, u.uid]] : [])] as [string, number][];
  const members = (g: string) => (u && u.groups.includes(g) ? u.name : "");
  const files: Record<string, string> = {
    "etc/passwd": `root:x:0:0:root:/root:/bin/sh\n${u ? `${u.name}:x:${u.uid}:${u.uid}:,,,:/home/${u.name}:/bin/bash\n` : ""}`,
    "etc/shadow": `root:*:19000:0:99999:7:::\n${u ? `${u.name}:$6$old$oldhash:19000:0:99999:7:::\n` : ""}`,
    "etc/group": groups.map(([g, id]) => `${g}:x:${id}:${members(g)}\n`).join(""),
    "etc/gshadow": groups.map(([g]) => `${g}:*::${members(g)}\n`).join(""),
    "etc/nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files\n",
    "etc/hostname": "raspberrypi\n",
    "etc/hosts": "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n\n127.0.1.1\t\traspberrypi\n",
    "etc/ssh/sshd_config": "Include /etc/ssh/sshd_config.d/*.conf\n\nKbdInteractiveAuthentication no\nUsePAM yes\n",
    ...(u
      ? {
          "etc/sudoers.d/010_pi-nopasswd": `${u.name} ALL=(ALL) NOPASSWD: ALL\n`,
          [`home/${u.name}/.ssh/authorized_keys`]: "ssh-ed25519 AAAAold old@key\n",
          [`home/${u.name}/.bashrc`]: "# bashrc\n",
        }
      : {}),
    ...opts.files,
  };
  for (const [p, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    writeFileSync(join(root, p), content);
  }
  chmodSync(join(root, "etc/shadow"), 0o640);
  if (u) run(["chown", "-R", `${u.uid}:${u.uid}`, join(root, "home", u.name)]);
  mkdirSync(join(root, opts.bootDir.slice(1)), { recursive: true });
}

/** Run `shell script` inside the sandbox, as root, isolated. */
export function runInSandbox(root: string, shell: string, script: string): { code: number; stdout: string; stderr: string } {
  return run(["unshare", "--uts", "--ipc", "--net", "--mount", "--pid", "--fork", "chroot", root, shell, script], { ok: false });
}

export function readIn(root: string, p: string): string {
  return readFileSync(join(root, p), "utf8");
}

export function modeIn(root: string, p: string): { mode: number; uid: number; gid: number } {
  const st = statSync(join(root, p));
  return { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
}

function copyWithLibs(bin: string, root: string): void {
  const deps = run(["ldd", bin]).stdout.split("\n").flatMap((l) => {
    const m = /(\/[^\s]+)\s+\(0x/.exec(l);
    return m ? [m[1]] : [];
  });
  for (const f of [bin, ...deps]) {
    const dest = join(root, f);
    if (existsSync(dest)) continue;
    mkdirSync(dirname(dest), { recursive: true });
    copyFileSync(f, dest);
    chmodSync(dest, 0o755);
  }
}
