import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { chroot, log, run, since } from "./_run.ts";
import { ensureCached } from "./cache.ts";
import { ensureSuiteKey } from "./paths.ts";
import { BOARD_USERS } from "./recipes.ts";

/**
 * Shared chroot trees the images start from, each cached under <cache>/trees/<layer>-<hash>:
 *   debootstrap  Debian trixie minbase + the packages below (the only network-heavy step, ~80 s)
 *   base         + users, keys, sudoers, initramfs for all board disk buses, no docs/apt caches
 *   cloud        base + cloud-init, and netplan + wpasupplicant so it renders Wi-Fi (for B-cloud)
 * A layer's hash covers its parent's hash and everything that shapes it (this file included), so
 * editing a recipe rebuilds exactly the layers below the edit. Caching mechanics: cache.ts.
 */
export const DEBIAN = {
  suite: "trixie",
  mirror: "http://deb.debian.org/debian",
  variant: "minbase",
  // linux-image-amd64 (generic) rather than cloud-amd64: only the generic kernel has SD (sdhci-pci,
  // mmc_block) and USB storage; the cloud kernel has neither. Both need an initramfs for virtio-blk.
  packages: [
    "systemd", "systemd-sysv", "udev", "dbus", "libpam-systemd", "openssh-server", "sudo",
    "e2fsprogs", "dosfstools", "fdisk", "busybox-static", "kmod", "initramfs-tools", "linux-image-amd64",
    "iproute2", "procps", "xz-utils", "zstd",
  ],
  // cloud-init renders Wi-Fi only through netplan; netplan's default renderer is the
  // systemd-networkd the base tree already enables, which needs wpa_supplicant for Wi-Fi.
  cloudPackages: ["cloud-init", "netplan.io", "wpasupplicant"],
} as const;

/** Masked in every systemd image (configureBase). */
const QUIET_UNITS = [
  "getty@tty1.service", "dev-hugepages.mount", "dev-mqueue.mount", "sys-kernel-debug.mount", "sys-kernel-tracing.mount",
  "sys-fs-fuse-connections.mount", "sys-kernel-config.mount", "modprobe@drm.service", "modprobe@efi_pstore.service",
  "modprobe@fuse.service", "modprobe@configfs.service", "systemd-pstore.service", "systemd-network-generator.service",
  // python3 registers .pyc files with binfmt_misc (B-cloud): 4.9 s + 2.4 s of a cloud-init first boot
  // under TCG (systemd-analyze blame, 2026-11-29), for a format nothing on a board runs that way.
  "systemd-binfmt.service", "proc-sys-fs-binfmt_misc.automount", "proc-sys-fs-binfmt_misc.mount",
  // The per-user service manager (systemd --user) that pam_systemd starts at a user's first login:
  // 4 s of a TCG board's CPU for each user after each boot or snapshot restore (an SSH login as pi
  // on a board from A's snapshot: 5.4 s, 1.3 s with the manager running, 1.5 s with it masked;
  // 2026-11-29). Logins, sessions (logind) and sudo work without it; no board runs user units.
  "user@.service",
];

/**
 * A board's network is QEMU user-mode with restrict=on (board.ts): its DNS (10.0.2.3) never
 * answers, so every lookup not in /etc/hosts waited out the resolver (getent hosts of the board's
 * own name: 10 s, for the IPv6 query; an unknown name: 20 s). A board on a LAN gets an answer at
 * once; a resolver on the board's loopback, where nothing listens, fails as fast (ECONNREFUSED).
 */
const BOARD_RESOLV_CONF = "# QEMU user-mode net with restrict=on has no DNS: fail lookups at once\nnameserver 127.0.0.1\n";

const HERE = import.meta.dir;
export const ROOTFS_DIR = join(HERE, "rootfs");

export type TreeName = "base" | "cloud";

export interface Tree {
  path: string;
  key: string;
}

/** sha256 over strings, and over files (relative path + mode + content) for directories. */
export function hashOf(...parts: (string | { files: string })[]): string {
  const h = createHash("sha256");
  for (const part of parts) {
    if (typeof part === "string") {
      h.update(`s${part.length}:${part}`);
      continue;
    }
    for (const file of listFiles(part.files)) {
      const st = statSync(file);
      h.update(`f${relative(part.files, file)}:${st.mode & 0o111 ? "x" : "-"}:`);
      h.update(readFileSync(file));
    }
  }
  return h.digest("hex").slice(0, 16);
}

export async function ensureTree(name: TreeName): Promise<Tree> {
  const debootstrap = await ensureDebootstrapTree();
  const { publicKey } = await ensureSuiteKey();
  const baseKey = hashOf(debootstrap.key, readFileSync(import.meta.path, "utf8"), { files: join(ROOTFS_DIR, "common") }, publicKey);
  const base = await ensureLayer("base", baseKey, async (dir) => {
    await run(["cp", "-a", `${debootstrap.path}/.`, dir]);
    await configureBase(dir, publicKey);
  });
  if (name === "base") return base;
  const cloudKey = hashOf(base.key, DEBIAN.cloudPackages.join(" "));
  return ensureLayer("cloud", cloudKey, async (dir) => {
    await run(["cp", "-a", `${base.path}/.`, dir]);
    await aptInstall(dir, DEBIAN.cloudPackages);
  });
}

// --- internal ---

async function ensureDebootstrapTree(): Promise<Tree> {
  const key = hashOf(DEBIAN.suite, DEBIAN.mirror, DEBIAN.variant, DEBIAN.packages.join(","));
  return ensureLayer("debootstrap", key, async (dir) => {
    const t0 = performance.now();
    await run([
      "debootstrap", `--variant=${DEBIAN.variant}`, `--include=${DEBIAN.packages.join(",")}`,
      DEBIAN.suite, dir, DEBIAN.mirror,
    ]);
    log(`debootstrap ${DEBIAN.suite}: ${since(t0)} s`);
  });
}

async function ensureLayer(layer: string, key: string, build: (dir: string) => Promise<void>): Promise<Tree> {
  const t0 = performance.now();
  const { dir, built } = await ensureCached("trees", layer, key, async (tmp) => {
    log(`building tree ${layer}-${key}`);
    await build(tmp);
  });
  if (built) log(`tree ${layer}-${key} built in ${since(t0)} s`);
  return { path: dir, key };
}

async function configureBase(dir: string, publicKey: string): Promise<void> {
  await run(["cp", "-a", "--no-preserve=ownership", `${ROOTFS_DIR}/common/.`, `${dir}/`]);
  await run(["chmod", "0440", `${dir}/etc/sudoers.d/010_pi-nopasswd`]);
  await removeDocs(dir);
  // debootstrap copied this machine's resolv.conf in; a board gets BOARD_RESOLV_CONF.
  writeFileSync(join(dir, "etc/resolv.conf"), BOARD_RESOLV_CONF);

  await chroot(dir, ["useradd", "-m", "-s", "/bin/bash", "-u", "1000", "-G", "sudo,adm", "pi"]);
  await chroot(dir, ["useradd", "-m", "-s", "/bin/bash", "-u", "1001", "-G", "sudo", "strict"]);
  await chroot(dir, ["chpasswd"], {
    stdin: Object.entries(BOARD_USERS).map(([u, { password }]) => `${u}:${password}\n`).join(""),
  });
  for (const [home, owner] of [["root", "0:0"], ["home/pi", "1000:1000"], ["home/strict", "1001:1001"]] as const) {
    await run(["install", "-d", "-m", "0700", "-o", owner.split(":")[0]!, "-g", owner.split(":")[1]!, `${dir}/${home}/.ssh`]);
    writeFileSync(`${dir}/${home}/.ssh/authorized_keys`, `${publicKey}\n`, { mode: 0o600 });
    await run(["chown", owner, `${dir}/${home}/.ssh/authorized_keys`]);
  }

  // Host keys and machine-id are per image (build-image.ts): A and B are different installs.
  await run(["sh", "-c", 'rm -f "$1"/etc/ssh/ssh_host_* "$1"/etc/machine-id "$1"/var/lib/dbus/machine-id', "-", dir]);

  // Timers that would only compete for the one emulated CPU during a test.
  await chroot(dir, ["systemctl", "disable", "apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_all.timer", "fstrim.timer", "e2scrub_reap.service"]);
  await chroot(dir, ["systemctl", "enable", "systemd-networkd.service"]);
  // Units for what a board has no use for (a display, debug and trace filesystems, FUSE, pstore, binfmt,
  // DRM, SSH over AF_VSOCK): under TCG each costs the one emulated CPU a fork, an exec and often
  // a module load at every boot. What touches the root filesystem stays as on a Pi (the journal,
  // random seed, fsck): flash-live must cope with those writing to the disk it replaces.
  await chroot(dir, ["systemctl", "mask", ...QUIET_UNITS]);
  mkdirSync(join(dir, "etc/systemd/system-generators"), { recursive: true });
  symlinkSync("/dev/null", join(dir, "etc/systemd/system-generators/systemd-ssh-generator"));

  // No udev in the initramfs: its coldplug and settle took 5 of a light board's 17.6 s from power-on
  // to sshd under TCG (measured 2026-11-29: 12.5 s without). The modules the board's disk buses need
  // are listed (etc/initramfs-tools/modules) and loaded by initramfs-tools itself, blkid finds
  // root=PARTUUID= (our hook copies it: udev's did), and the system's own udev starts after the switch.
  await run(["rm", "-f", ...["hooks/udev", "scripts/init-top/udev", "scripts/init-bottom/udev"].map((f) => `${dir}/usr/share/initramfs-tools/${f}`)]);
  const t0 = performance.now();
  await chroot(dir, ["update-initramfs", "-u", "-k", "all"]);
  log(`update-initramfs: ${since(t0)} s`);
  await aptClean(dir);
}

async function aptInstall(dir: string, packages: readonly string[]): Promise<void> {
  // Keep maintainer scripts from starting services inside the chroot; give apt a resolver.
  writeFileSync(join(dir, "usr/sbin/policy-rc.d"), "#!/bin/sh\nexit 101\n", { mode: 0o755 });
  writeFileSync(join(dir, "etc/resolv.conf"), readFileSync("/etc/resolv.conf"));
  await run(["mount", "-t", "proc", "proc", join(dir, "proc")]);
  try {
    await chroot(dir, ["apt-get", "update"]);
    await chroot(dir, ["apt-get", "install", "-y", "--no-install-recommends", ...packages]);
  } finally {
    await run(["umount", join(dir, "proc")], { check: false });
    await run(["rm", "-f", join(dir, "usr/sbin/policy-rc.d")]);
    writeFileSync(join(dir, "etc/resolv.conf"), BOARD_RESOLV_CONF);
  }
  await aptClean(dir);
}

async function aptClean(dir: string): Promise<void> {
  await run(["sh", "-c", 'rm -rf "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*_* "$1"/var/log/apt/* "$1"/var/log/dpkg.log "$1"/var/cache/debconf/*-old', "-", dir]);
}

async function removeDocs(dir: string): Promise<void> {
  await run(["sh", "-c", [
    'cd "$1"',
    "find usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete",
    "rm -rf usr/share/man/* usr/share/info/*",
    "find usr/share/locale -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +",
  ].join(" && "), "-", dir]);
}

function listFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listFiles(p));
    else out.push(p);
  }
  return out;
}
