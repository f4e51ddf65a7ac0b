import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { chroot, log, run, since } from "./_run.ts";
import { ensureCached } from "./cache.ts";
import { type Packed, type WithForms, withForms } from "./compress.ts";
import { ASSEMBLE_DISK, assembleDisk, idsFor } from "./assemble-disk.ts";
import { ensureTree, hashOf, ROOTFS_DIR } from "./build-tree.ts";
import { BOARD_MARKER_PATH, BOARD_MARKER_TEXT, IMAGES, type ImageName, type ImageRecipe } from "./recipes.ts";

/**
 * Board images, laid out like a Raspberry Pi OS image: partition 1 FAT32 `bootfs` with the kernel,
 * initramfs, cmdline.txt and config.txt; partition 2 ext4 `rootfs` (assembled without loop mounts:
 * assemble-disk.ts). Cached in <cache>/images/<name>-<hash>/ (cache.ts).
 */
export interface BoardImage {
  name: ImageName;
  /** Content of /etc/image-id. */
  marker: string;
  hostname: string;
  /** Cache key: hash of the recipe (tree layers, these sources, rootfs files, parameters). */
  key: string;
  dir: string;
  raw: string;
  /** The raw image's size; a form asked of ensureImage adds its own (compress.ts). */
  sizes: { raw: number };
  /** sha256 of the raw image. */
  sha256: string;
  table: "dos" | "gpt";
  /** PARTUUIDs as the kernel sees them (cmdline.txt uses root=PARTUUID=<root>). */
  partuuid: { boot: string; root: string };
  /** Partition offsets and sizes in bytes. */
  partitions: { start: number; size: number }[];
  cmdline: string;
  /** Seconds the build took (0 when reused from the cache). */
  buildSeconds: number;
}

/**
 * Kernel arguments of every board image (x86 and arm64), for speed under TCG; a test board runs only
 * the suite's own code.
 * - mitigations=off: the board's CPU model (Nehalem) has Meltdown, so the kernel would turn on page
 *   table isolation, and every syscall would then flush TCG's whole soft TLB: measured on an L board,
 *   `dd bs=4k` 147-156 MB/s with, 1.1-1.6 GB/s without, and boot to SSH 27.4 s -> 20.9 s.
 * - cryptomgr.notests and the three initcalls: the crypto self-tests, the encrypted-keys type, the
 *   KDF self-test and the jitter entropy source's self-test took 1.8 of the 3.7 s of initcalls
 *   (initcall_debug); nothing on a board uses them (its entropy comes from RDRAND and virtio-rng).
 *   Plain QEMU, an L disk, power-on to "rcS: board up", three pairs back to back (2026-11-29):
 *   12.6 / 12.2 / 12.6 s without, 9.4 / 9.5 / 9.3 s with (the kernel reached /init at 4.6-4.8 s,
 *   then 2.3-2.6 s).
 */
export const BOARD_KERNEL_ARGS = "mitigations=off cryptomgr.notests initcall_blacklist=init_encrypted,crypto_kdf108_init,jent_mod_init";

const building = new Map<ImageName, Promise<BoardImage>>();

/**
 * Build (or reuse from the cache) one board image, with the compressed forms asked for (made on
 * first use and kept: compress.ts): `(await ensureImage("L2", "xz")).xz`.
 */
export async function ensureImage<F extends Packed = never>(name: ImageName, ...forms: F[]): Promise<WithForms<BoardImage, F>> {
  const recipe = IMAGES[name];
  if (!recipe) throw new Error(`no board image named ${name}`);
  let p = building.get(name);
  if (!p) {
    p = buildOrReuse(recipe);
    building.set(name, p);
    p.catch(() => building.delete(name));
  }
  return withForms(await p, forms);
}

// --- internal ---

async function buildOrReuse(recipe: ImageRecipe): Promise<BoardImage> {
  const tree = await ensureTree(recipe.tree);
  const rootfsParts = [{ files: join(ROOTFS_DIR, recipe.flavor) }];
  if (recipe.tree === "cloud") rootfsParts.push({ files: join(ROOTFS_DIR, "cloud") }, { files: join(ROOTFS_DIR, "cloud-bootfs") });
  const key = hashOf(tree.key, readFileSync(import.meta.path, "utf8"), readFileSync(ASSEMBLE_DISK, "utf8"), JSON.stringify(recipe), ...rootfsParts);
  const t0 = performance.now();
  const { dir, built } = await ensureCached("images", recipe.name, key, async (tmp, final) => {
    log(`building image ${recipe.name} (${recipe.name}-${key})`);
    const info = await build(recipe, key, tree.path, tmp, final);
    info.buildSeconds = since(t0);
    writeFileSync(join(tmp, "info.json"), `${JSON.stringify(info, null, 2)}\n`);
    log(`image ${recipe.name} built in ${info.buildSeconds} s (raw ${mib(info.sizes.raw)})`);
  });
  const info = JSON.parse(readFileSync(join(dir, "info.json"), "utf8")) as BoardImage;
  return { ...info, buildSeconds: built ? info.buildSeconds : 0 };
}

async function build(recipe: ImageRecipe, key: string, treePath: string, tmp: string, finalDir: string): Promise<BoardImage> {
  const ids = idsFor(recipe.name);
  const hostname = `board-${recipe.marker.toLowerCase()}`;
  const partuuid = recipe.table === "dos"
    ? { boot: `${ids.diskId}-01`, root: `${ids.diskId}-02` }
    : { boot: ids.bootGuid, root: ids.rootGuid };

  // 1. Root tree: a copy of the shared tree plus this image's identity.
  const root = join(tmp, "root");
  await run(["cp", "-a", `${treePath}/.`, root]);
  await run(["rm", "-f", join(root, ".flash-live-complete")]);
  await run(["cp", "-a", "--no-preserve=ownership", `${ROOTFS_DIR}/${recipe.flavor}/.`, `${root}/`]);
  if (recipe.tree === "cloud") await run(["cp", "-a", "--no-preserve=ownership", `${ROOTFS_DIR}/cloud/.`, `${root}/`]);
  writeFileSync(join(root, "etc/image-id"), `${recipe.marker}\n`);
  writeFileSync(join(root, BOARD_MARKER_PATH.slice(1)), BOARD_MARKER_TEXT);
  writeFileSync(join(root, "etc/hostname"), `${hostname}\n`);
  writeFileSync(join(root, "etc/hosts"), `127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t${hostname}\n`);
  writeFileSync(join(root, "etc/machine-id"), `${ids.machineId}\n`);
  for (const [type, bits] of [["ed25519", []], ["ecdsa", []], ["rsa", ["-b", "3072"]]] as const) {
    await run(["ssh-keygen", "-q", "-t", type, ...bits, "-N", "", "-C", `root@${hostname}`, "-f", join(root, `etc/ssh/ssh_host_${type}_key`)]);
  }
  // As on Raspberry Pi OS: both partitions by PARTUUID, /boot/firmware WITHOUT nofail (a nofail
  // mount is not ordered before local-fs.target, so a systemd.run= script could start before it).
  writeFileSync(join(root, "etc/fstab"), [
    "proc            /proc           proc    defaults          0       0",
    `PARTUUID=${partuuid.boot}  /boot/firmware  vfat    defaults          0       2`,
    `PARTUUID=${partuuid.root}  /               ext4    defaults,noatime  0       1`,
    "",
  ].join("\n"));
  mkdirSync(join(root, "boot/firmware"), { recursive: true });
  // Newer than /usr: systemd's ConditionNeedsUpdate units (journal catalog, ldconfig, ~2 s under
  // TCG) then do not run at the first boot.
  writeFileSync(join(root, "etc/.updated"), "");
  writeFileSync(join(root, "var/.updated"), "");
  if (recipe.flavor === "light") await makeLight(root);

  // 2. Boot files move to the FAT partition, where the board's "firmware" (firmware.ts) finds them.
  const bootDir = join(tmp, "bootfs");
  mkdirSync(bootDir);
  const bootFiles = readdirSync(join(root, "boot"));
  const kernel = bootFiles.find((f) => f.startsWith("vmlinuz-"));
  const initrd = bootFiles.find((f) => f.startsWith("initrd.img-"));
  if (!kernel || !initrd) throw new Error(`no kernel/initrd in ${root}/boot (${bootFiles.join(", ")})`);
  await run(["mv", join(root, "boot", kernel), join(bootDir, "vmlinuz")]);
  await run(["mv", join(root, "boot", initrd), join(bootDir, "initrd.img")]);
  await run(["rm", "-f", join(root, "vmlinuz"), join(root, "vmlinuz.old"), join(root, "initrd.img"), join(root, "initrd.img.old")]);
  const cmdline = `console=ttyS0,115200 root=PARTUUID=${partuuid.root} rootfstype=ext4 fsck.repair=yes rootwait ${BOARD_KERNEL_ARGS}`;
  writeFileSync(join(bootDir, "cmdline.txt"), `${cmdline}\n`);
  writeFileSync(join(bootDir, "config.txt"), [
    "# Read by the test harness's \"firmware\" (tests/harness/firmware.ts) like a Pi's config.txt:",
    "# the kernel and initramfs to boot; the command line is cmdline.txt.",
    "[all]",
    "kernel=vmlinuz",
    "initramfs initrd.img followkernel",
    "",
  ].join("\n"));
  if (recipe.tree === "cloud") await run(["cp", `${ROOTFS_DIR}/cloud-bootfs/meta-data`, `${ROOTFS_DIR}/cloud-bootfs/user-data`, bootDir]);

  // 3. The disk (partition table, FAT, ext4).
  const raw = join(tmp, `${recipe.name}.img`);
  const disk = await assembleDisk({ raw, diskMiB: recipe.diskMiB, bootMiB: recipe.bootMiB, table: recipe.table, bootDir, rootDir: root, tmp, ids });
  const rawFinal = join(finalDir, `${recipe.name}.img`);
  return {
    name: recipe.name, marker: recipe.marker, hostname, key, dir: finalDir,
    raw: rawFinal, sizes: disk.sizes, sha256: disk.sha256, table: recipe.table, partuuid, partitions: disk.partitions, cmdline, buildSeconds: 0,
  };
}

/**
 * Light boards: the same Debian userland, but PID 1 is busybox init running rootfs/light's rcS.
 * No systemd, no udev (flash-live must cope with a board without systemctl), and only the kernel
 * modules a board uses, so the image stays small and a flash takes seconds.
 */
async function makeLight(root: string): Promise<void> {
  await run(["sh", "-c", [
    'cd "$1"',
    "rm -rf usr/lib/systemd usr/lib/udev etc/systemd etc/udev var/log/journal usr/share/zoneinfo usr/lib/x86_64-linux-gnu/gconv",
    "rm -f usr/bin/systemctl usr/bin/journalctl usr/bin/udevadm usr/bin/loginctl usr/bin/busctl usr/bin/systemd* usr/bin/*ctl",
    "rm -f usr/sbin/init usr/sbin/reboot usr/sbin/halt usr/sbin/poweroff usr/sbin/shutdown usr/sbin/runlevel usr/sbin/telinit",
    "for a in init reboot halt poweroff; do ln -s ../bin/busybox usr/sbin/$a; done",
    // Modules: disk buses, filesystems, USB storage, virtio net; nothing else.
    "cd usr/lib/modules/*/kernel",
    "find . -name '*.ko*' | grep -vE '^\\./(fs|lib|crypto|block)/|^\\./drivers/(block|nvme|mmc|virtio|usb/(storage|host|core|common)|scsi/(sd_mod|scsi_mod|scsi_common|virtio_scsi)|net/(virtio_net|net_failover)|char/hw_random/virtio)|^\\./net/core/failover' | xargs rm -f",
  ].join(" && "), "-", root]);
  const version = readdirSync(join(root, "usr/lib/modules"))[0]!;
  await chroot(root, ["depmod", "-a", version]);
}

function mib(n: number): string {
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
