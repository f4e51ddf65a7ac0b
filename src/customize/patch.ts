import type { BootFile } from "../core/hooks.ts";
import { UserError } from "../errors.ts";
import { asByteSource, type BootBytes } from "./bytes.ts";
import { FatVolume } from "./fat.ts";

export interface BootEdits {
  /** Kernel arguments appended to cmdline.txt's single line (after one space). */
  cmdlineAppend?: string;
}

/** Changed disk bytes: what the board writes after the image, in a few extents. */
export interface SectorPatch {
  /** offset: absolute byte offset on the disk (512-aligned); data: a multiple of 512 bytes. Sorted, non-overlapping. */
  extents: { offset: number; data: Uint8Array }[];
}

export const SECTOR = 512;
/** Unchanged sectors between two changes up to which both are sent as one extent: a few KiB more beats another dd. */
export const MERGE_GAP_SECTORS = 16;

/**
 * Write `files` (created or replaced; directories created) and the cmdline.txt edit into a FAT
 * partition image and return the sectors that changed, by byte offset within the partition. The
 * input is never modified.
 */
export async function editBootPartition(boot: BootBytes, files: readonly BootFile[], edits: BootEdits = {}): Promise<Map<number, Uint8Array>> {
  const vol = await FatVolume.open(boot);
  try {
    for (const f of files) vol.writeFile(f.path, f.data);
    if (edits.cmdlineAppend) {
      const cmdline = vol.readText("cmdline.txt");
      if (cmdline === undefined) throw new UserError("The image's boot partition has no cmdline.txt to add kernel arguments to.", "Use --customize-with cloud-init, or an image with cmdline.txt.");
      // cmdline.txt must stay one line (the Pi firmware reads only the first).
      vol.writeFile("cmdline.txt", `${cmdline.replace(/\s+$/, "")} ${edits.cmdlineAppend}\n`);
    }
  } finally {
    vol.unmount();
  }
  return vol.changedSectors();
}

/** New partition content with `files` and `edits` applied (a copy; the input is not modified). */
export async function applyBootFiles(bootPartitionBytes: Uint8Array, files: readonly BootFile[], edits: BootEdits = {}): Promise<Uint8Array> {
  const changes = await editBootPartition(bootPartitionBytes, files, edits);
  const out = bootPartitionBytes.slice();
  for (const [offset, data] of changes) out.set(data, offset);
  return out;
}

/**
 * The sector patch for a boot partition edit, without materializing the new partition: the
 * efficient form of diffSectors(old, applyBootFiles(old), partitionOffset). `boot` may be sparse.
 */
export async function prepareBootPatch(boot: BootBytes, files: readonly BootFile[], edits: BootEdits, partitionOffset: number): Promise<SectorPatch> {
  const changes = await editBootPartition(boot, files, edits);
  const src = asByteSource(boot);
  const changed: number[] = [];
  const bySector = new Map<number, Uint8Array>();
  for (const [offset, data] of changes) {
    for (let p = 0; p < data.length; p += SECTOR) {
      const s = (offset + p) / SECTOR;
      const sector = data.subarray(p, p + SECTOR);
      if (Buffer.compare(sector, src.read(s * SECTOR, SECTOR)) === 0) continue;
      changed.push(s);
      bySector.set(s, sector);
    }
  }
  return buildPatch(changed, (s) => bySector.get(s) ?? src.read(s * SECTOR, SECTOR), partitionOffset);
}

/** The 512-byte sectors where `newBytes` differs from `oldBytes` (same length), as a patch at `partitionOffset`. */
export function diffSectors(oldBytes: Uint8Array, newBytes: Uint8Array, partitionOffset: number): SectorPatch {
  if (oldBytes.length !== newBytes.length) throw new Error("diffSectors: old and new differ in length");
  if (oldBytes.length % SECTOR !== 0 || partitionOffset % SECTOR !== 0) throw new Error("diffSectors: sizes and offset must be multiples of 512");
  const changed: number[] = [];
  const CHUNK = 64 * 1024;
  // Whole chunks first (native memcmp), sectors only inside chunks that differ.
  for (let c = 0; c < oldBytes.length; c += CHUNK) {
    const end = Math.min(c + CHUNK, oldBytes.length);
    if (Buffer.compare(oldBytes.subarray(c, end), newBytes.subarray(c, end)) === 0) continue;
    for (let p = c; p < end; p += SECTOR) {
      if (Buffer.compare(oldBytes.subarray(p, p + SECTOR), newBytes.subarray(p, p + SECTOR)) !== 0) changed.push(p / SECTOR);
    }
  }
  return buildPatch(changed, (s) => newBytes.subarray(s * SECTOR, (s + 1) * SECTOR), partitionOffset);
}

export function patchBytes(patch: SectorPatch): number {
  return patch.extents.reduce((n, e) => n + e.data.length, 0);
}

/**
 * The patch as two artifacts for the busybox helper: `data` (the extents back to back) and `index`,
 * one line per extent: `disk_offset length data_offset` in bytes, all multiples of 512, so each
 * line is one `dd if=DATA of=DISK bs=512 skip=$((data_offset/512)) seek=$((disk_offset/512))
 * count=$((length/512)) conv=notrunc`.
 */
export function encodePatch(patch: SectorPatch): { data: Uint8Array; index: string } {
  const data = new Uint8Array(patchBytes(patch));
  const lines: string[] = [];
  let at = 0;
  for (const e of patch.extents) {
    data.set(e.data, at);
    lines.push(`${e.offset} ${e.data.length} ${at}`);
    at += e.data.length;
  }
  return { data, index: lines.length ? `${lines.join("\n")}\n` : "" };
}

/** Apply a patch to a buffer that holds the disk from `base` on (tests, and writing image files). */
export function applyPatch(target: Uint8Array, patch: SectorPatch, base = 0): void {
  for (const e of patch.extents) target.set(e.data, e.offset - base);
}

// --- internal ---

function buildPatch(changed: number[], sectorData: (s: number) => Uint8Array, partitionOffset: number): SectorPatch {
  changed.sort((a, b) => a - b);
  const ranges: [number, number][] = [];
  for (const s of changed) {
    const last = ranges[ranges.length - 1];
    if (last && s - last[1] <= MERGE_GAP_SECTORS + 1) last[1] = Math.max(last[1], s);
    else ranges.push([s, s]);
  }
  return {
    extents: ranges.map(([a, b]) => {
      const data = new Uint8Array((b - a + 1) * SECTOR);
      for (let s = a; s <= b; s++) data.set(sectorData(s), (s - a) * SECTOR);
      return { offset: partitionOffset + a * SECTOR, data };
    }),
  };
}
