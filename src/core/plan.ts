import type { FlashMode } from "../config/schema.ts";
import { formatBytes, type ImageFormat } from "../image/source.ts";
import type { BlockDev, TargetFacts } from "./facts.ts";
import { boardCodecOf, type TransportName } from "./transport.ts";

/** What the board decompresses while writing. Chosen from what the board's busybox decodes fast. */
export type BoardCodec = "xz" | "gz" | "bz2" | "lzo" | "raw";

export interface PlanInput {
  facts: TargetFacts;
  /** Without an image (`check HOST`), only the board-side checks run. */
  image?: { path: string; format: ImageFormat; fileSize: number; rawSize: number };
  local: boolean;
  mode: FlashMode;
  /** systemd unit glob patterns to stop (after plugins). */
  servicePatterns: string[];
  /** Set by the test harness (src/core/safety.ts): only a QEMU test board may be written. */
  harness?: boolean;
  /** How the image travels (default: as it is; zstd, which the board cannot decode, as gzip -1). */
  transport?: TransportName;
  /** Why that transport (shown with the plan). */
  transportReason?: string;
  /** The re-encoding's (gzip -1, lzop -1, xz -1) bytes per raw byte, when measured on a sample (for the /dev/shm estimate). */
  encodedRatio?: number;
  /** Raw bytes a copy made on this side (gzip, lzo, xz, raw) carries when packed (src/image/pack.ts); default the image's. */
  packedBytes?: number;
}

export interface Plan {
  mode: "ramfs" | "stream";
  disk: BlockDev;
  diskPath: string;
  rootDevice?: BlockDev;
  /** What travels to the board and how the board decodes it. */
  codec: BoardCodec;
  /** The sending side decodes the file and sends gzip -1, lzop -1, xz -1 or raw bytes instead of the file as is. */
  transcode: boolean;
  transport: TransportName;
  transportReason: string;
  /** Bytes the ramfs copy will take in /dev/shm (an estimate when transcoding). */
  stagedBytes: number;
  /** Units to stop, resolved from the patterns against the board's active units. */
  units: string[];
  roMounts: string[];
  freezeMounts: string[];
  /** Non-empty: flash-live refuses, and each entry says why and what to do. */
  refusals: string[];
  notes: string[];
  /** Why this mode was picked. */
  modeReason: string;
}

/** Room kept free in /dev/shm beyond the staged image: the helper, busybox, logs, and the board's own use. */
export const SHM_MARGIN = 64 << 20;

/** Whether `bytes` staged in /dev/shm leave SHM_MARGIN of the `shmAvail` free there. */
export function fitsShm(bytes: number, shmAvail: number): boolean {
  return shmAvail >= bytes + SHM_MARGIN;
}

const FREEZABLE = new Set(["ext4", "ext3", "ext2", "xfs", "btrfs", "f2fs", "jfs", "reiserfs", "nilfs2"]);
const SUPPORTED_ARCH = new Set(["x86_64", "aarch64", "arm64", "armv7l", "armv8l", "riscv64"]);

/** Pure: facts + image + options -> what flash-live would do, or why it refuses. */
export function planFlash(input: PlanInput): Plan {
  const { facts } = input;
  const image = input.image ?? { path: "", format: "raw" as ImageFormat, fileSize: 0, rawSize: 0 };
  const hasImage = input.image !== undefined;
  const refusals: string[] = [];
  const notes: string[] = [];

  if (input.harness && !facts.testBoard) {
    refusals.push("this run is the test harness and the target is not one of its QEMU boards (no /etc/flash-live-test-board): refusing by construction");
  }
  if (facts.sudo === "password") {
    refusals.push(`user ${facts.user} needs a password for sudo; flash-live runs sudo non-interactively (sudo -n). Allow it with a sudoers rule (e.g. "${facts.user} ALL=(ALL) NOPASSWD: ALL" in /etc/sudoers.d/flash-live), or connect as root`);
  } else if (facts.sudo === "missing") {
    refusals.push(`user ${facts.user} is not root and sudo is not installed: connect as root or install sudo`);
  }
  if (!SUPPORTED_ARCH.has(facts.arch)) {
    refusals.push(`the board's CPU (${facts.arch}) is not one flash-live carries a static busybox for (x86_64, aarch64, armv7l, riscv64)`);
  }
  if (facts.shmFsType && facts.shmFsType !== "tmpfs") {
    refusals.push(`/dev/shm is ${facts.shmFsType}, not tmpfs: the helper must run from RAM, not from the disk being overwritten`);
  }
  const root = facts.root;
  if (root.problem) refusals.push(root.problem);
  const disk = root.disk;
  if (hasImage && disk && image.rawSize > disk.sizeBytes) {
    refusals.push(
      `the image is larger than the disk: ${formatBytes(image.rawSize)} (${image.rawSize} bytes) does not fit on /dev/${disk.name} (${formatBytes(disk.sizeBytes)}, ${disk.sizeBytes} bytes). Use an image made for a disk this size or smaller`,
    );
  }
  if (disk?.readOnly) refusals.push(`/dev/${disk.name} is read-only (write-protect switch or eMMC boot lock?)`);

  // Transport: the board decompresses what its (our) busybox decodes; zstd is re-encoded as gzip -1
  // on the sending side (busybox has no zstd decoder) unless measurement or --transport says otherwise.
  let transport: TransportName = input.transport ?? (image.format === "zstd" ? "gzip" : "as-is");
  let transportReason = input.transportReason ?? (input.transport ? "asked for (--transport)" : image.format === "zstd" ? "the board's busybox has no zstd decoder" : "the file as it is");
  if (transport === "raw" && image.format === "raw") transport = "as-is";
  if (transport === "as-is" && image.format === "zstd") {
    transport = "gzip";
    transportReason = "the board's busybox has no zstd decoder: re-encoded as gzip -1";
  }
  const codec: BoardCodec = boardCodecOf(image.format, transport)!;
  const transcode = transport !== "as-is";
  // A re-encoding made here: the sample's ratio when measured, else about 1.3x (gzip -1), 1.5x
  // (lzop -1) or 1.1x (xz -1) a compressed file; never more than raw.
  const carried = input.packedBytes ?? image.rawSize;
  const stagedBytes =
    transport === "raw" || (transport === "as-is" && image.format === "raw")
      ? carried
      : transport === "gzip" || transport === "lzo" || transport === "xz"
        ? Math.min(carried, Math.ceil(input.encodedRatio !== undefined ? carried * input.encodedRatio * 1.1 : image.fileSize * { gzip: 1.3, lzo: 1.5, xz: 1.1 }[transport]))
        : image.fileSize;
  const fits = fitsShm(stagedBytes, facts.shmAvail);
  const shmNumbers = `${formatBytes(stagedBytes)} + ${formatBytes(SHM_MARGIN)} margin needed, ${formatBytes(facts.shmAvail)} free in /dev/shm`;
  const imageOnTargetDisk = input.local && facts.imageDev !== undefined && isOnDisk(facts, facts.imageDev);
  const shmRefusal = (msg: string) => hasImage && refusals.push(msg);

  let mode: "ramfs" | "stream";
  let modeReason: string;
  if (input.mode === "ramfs") {
    mode = "ramfs";
    modeReason = "asked for (--ramfs)";
    if (!fits) shmRefusal(`ramfs mode: the image does not fit in the board's RAM (${shmNumbers}). Use --stream, or free memory on the board`);
  } else if (input.mode === "stream") {
    mode = "stream";
    modeReason = "asked for (--stream)";
  } else if (!input.local) {
    mode = "ramfs";
    modeReason = `remote default: the whole image is copied and checked on the board before anything is overwritten (${shmNumbers})`;
    if (!fits) {
      shmRefusal(
        `the image does not fit in the board's RAM for ramfs mode (${shmNumbers}). Use --stream (the image is written while it arrives; a broken connection leaves a partial image) or free memory on the board`,
      );
    }
  } else if (fits) {
    mode = "ramfs";
    modeReason = `the image fits in /dev/shm (${shmNumbers})`;
  } else if (!imageOnTargetDisk) {
    mode = "stream";
    modeReason = `the image does not fit in /dev/shm (${shmNumbers}) and it is on another disk than the one being flashed`;
  } else {
    mode = "ramfs";
    modeReason = "";
    shmRefusal(
      `the image does not fit in /dev/shm (${shmNumbers}) and it lives on the disk being flashed (/dev/${disk?.name}), so it cannot be streamed either. Put the image on another disk (a USB stick) and use --stream, or free memory`,
    );
  }
  if (hasImage && mode === "stream" && input.local && imageOnTargetDisk) {
    refusals.push(`local stream mode reads the image during the write, but ${image.path} is on the disk being flashed (/dev/${disk?.name}). Put it on another disk (a USB stick), or use --ramfs`);
  }
  if (mode === "stream" && input.local && image.format === "zstd") {
    refusals.push("local stream mode cannot write a zstd image: the board's busybox has no zstd decoder and nothing from the old root may run during the write. Use --ramfs (flash-live re-encodes it into RAM first) or decompress it to .img/.img.gz first");
  }
  if (mode === "stream" && !input.local) notes.push("stream mode: if the connection breaks during the write, the board is left with a partial image and needs a re-flash by other means");

  const units = resolveUnits(input.servicePatterns, facts.units);
  const roMounts: string[] = [];
  const freezeMounts: string[] = [];
  for (const m of facts.diskMounts) {
    if (m.mountPoint === "/") continue;
    if (FREEZABLE.has(m.fstype)) freezeMounts.push(m.mountPoint);
    else roMounts.push(m.mountPoint);
  }
  if (root.mount && FREEZABLE.has(root.mount.fstype)) freezeMounts.push("/");
  else if (!root.problem) {
    roMounts.push("/");
    notes.push(`the root filesystem is ${root.mount.fstype}, which cannot be frozen; it is remounted read-only instead`);
  }
  if (facts.swaps.some((s) => !s.includes("zram"))) notes.push("swap is turned off before the write");

  return {
    mode,
    disk: disk ?? { name: "?", majmin: "?", sizeBytes: 0, kind: "disk", readOnly: false, removable: false },
    diskPath: `/dev/${disk?.name ?? "?"}`,
    rootDevice: root.device,
    codec,
    transcode,
    transport,
    transportReason,
    stagedBytes,
    units,
    roMounts,
    freezeMounts,
    refusals,
    notes,
    modeReason,
  };
}

function isOnDisk(facts: TargetFacts, majmin: string): boolean {
  const disk = facts.root.disk;
  if (!disk) return false;
  return majmin === disk.majmin || facts.diskPartitions.some((p) => p.majmin === majmin);
}

/** Glob patterns ("docker", "container-*") against unit names ("docker.service", "docker.socket"). */
export function resolveUnits(patterns: readonly string[], units: readonly string[]): string[] {
  const out: string[] = [];
  for (const p of patterns) {
    const re = globToRegExp(p);
    for (const u of units) {
      const base = u.replace(/\.(service|socket)$/, "");
      if ((re.test(u) || re.test(base)) && !out.includes(u)) out.push(u);
    }
  }
  // Sockets first: stopping a service whose socket is still listening lets it be re-activated.
  return out.sort((a, b) => Number(b.endsWith(".socket")) - Number(a.endsWith(".socket")));
}

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|\\]/g, "\\$&").replaceAll("*", ".*").replaceAll("?", ".");
  return new RegExp(`^${body}$`);
}
