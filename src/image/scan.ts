import { UserError } from "../errors.ts";
import type { Bmap } from "./bmap.ts";
import type { ImageInfo } from "./source.ts";
import { rawChunks } from "./source.ts";

/** Bytes written over the image on the disk (customization sectors), absolute disk offsets. */
export interface Extent {
  offset: number;
  data: Uint8Array;
}

export interface VerifyRange {
  offset: number;
  length: number;
  /** md5 of the expected disk content (image plus extents) in this range. */
  md5: string;
}

export interface ImageScan {
  rawSize: number;
  /** sha256 of the decompressed image: its identity in messages and records. */
  sha256: string;
  /** md5 of the decompressed image: what the board's staging check computes (busybox md5sum is the fast one on a board CPU). */
  md5: string;
  /** Read-back ranges of the expected disk content. */
  ranges: VerifyRange[];
  /** Raw slices spread over the image (opts.sample), for measuring transports. */
  sample?: Uint8Array;
  /** Seconds the scan took (decoding + hashing): this side's decode rate, at least. */
  seconds: number;
  /**
   * Runs of whole all-zero blocks (ZERO_BLOCK, aligned; the image's last block may be short) of the
   * image itself (before the extents). A copy made on this side does not carry them: the board
   * writes zeros there (src/image/pack.ts).
   */
  zeroRuns: { offset: number; length: number }[];
}

/** The granularity of zero runs: 1 MiB (a disk image's free space comes in long runs). */
export const ZERO_BLOCK = 1 << 20;

/** Finds the all-zero ZERO_BLOCK blocks of a stream fed in order, as runs. */
class ZeroRuns {
  readonly runs: { offset: number; length: number }[] = [];
  private blockStart = 0;
  private blockZero = true;
  private static readonly ZERO = new Uint8Array(ZERO_BLOCK);
  feed(chunk: Uint8Array, pos: number): void {
    let off = 0;
    while (off < chunk.length) {
      const take = Math.min(chunk.length - off, this.blockStart + ZERO_BLOCK - (pos + off));
      if (this.blockZero && Buffer.compare(chunk.subarray(off, off + take), ZeroRuns.ZERO.subarray(0, take)) !== 0) this.blockZero = false;
      off += take;
      if (pos + off === this.blockStart + ZERO_BLOCK) this.close(ZERO_BLOCK);
    }
  }
  /** At the end of the stream: the last, possibly short, block. */
  end(size: number): void {
    if (size > this.blockStart) this.close(size - this.blockStart);
  }
  private close(length: number): void {
    if (this.blockZero) {
      const last = this.runs.at(-1);
      if (last && last.offset + last.length === this.blockStart) last.length += length;
      else this.runs.push({ offset: this.blockStart, length });
    }
    this.blockStart += length;
    this.blockZero = true;
  }
}

/** Slices of the raw stream at `stride` intervals, up to `max` bytes in all. */
class Sampler {
  private parts: Uint8Array[] = [];
  private have = 0;
  constructor(
    private readonly stride: number,
    private readonly slice: number,
    private readonly max: number,
  ) {}
  feed(chunk: Uint8Array, pos: number): void {
    let at = pos;
    const end = pos + chunk.length;
    while (at < end && this.have < this.max) {
      const into = at % this.stride;
      if (into >= this.slice) {
        at += this.stride - into;
        continue;
      }
      const take = Math.min(end - at, this.slice - into, this.max - this.have);
      // A copy: the chunk's buffer is read into again (rawChunks).
      this.parts.push(new Uint8Array(chunk.subarray(at - pos, at - pos + take)));
      this.have += take;
      at += take;
    }
  }
  bytes(): Uint8Array {
    return Buffer.concat(this.parts);
  }
}

/** Hashes of the parts of a byte stream that fall in sorted, non-overlapping pieces. */
class PieceHasher {
  private i = 0;
  private h: Bun.CryptoHasher;
  readonly digests: string[] = [];
  constructor(
    private readonly pieces: readonly { offset: number; length: number }[],
    private readonly algo: "md5" | "sha256" | "sha1",
  ) {
    this.h = new Bun.CryptoHasher(algo);
  }
  /** `chunk` holds stream bytes [pos, pos + chunk.length). */
  feed(chunk: Uint8Array, pos: number): void {
    const end = pos + chunk.length;
    while (this.i < this.pieces.length) {
      const p = this.pieces[this.i]!;
      const pEnd = p.offset + p.length;
      if (p.offset >= end) return;
      const from = Math.max(pos, p.offset);
      const to = Math.min(end, pEnd);
      if (to > from) this.h.update(chunk.subarray(from - pos, to - pos));
      if (pEnd > end) return;
      this.digests.push(this.h.digest("hex"));
      this.h = new Bun.CryptoHasher(this.algo);
      this.i++;
    }
  }
}

/** Split regions into read-back pieces that never cross a multiple of `size` (so a piece is at most `size`). */
export function splitRegions(regions: readonly { offset: number; length: number }[], size: number): { offset: number; length: number }[] {
  const out: { offset: number; length: number }[] = [];
  for (const r of regions) {
    let off = r.offset;
    const end = r.offset + r.length;
    while (off < end) {
      const next = Math.min(end, (Math.floor(off / size) + 1) * size);
      out.push({ offset: off, length: next - off });
      off = next;
    }
  }
  return out;
}

/**
 * Read the whole image once on the sending side: proves it decompresses (a truncated or corrupt
 * image fails here, before anything on the board changes), gives its exact size, and the hashes the
 * board's read-back is compared with. md5 for the ranges: the board hashes with busybox, where md5 is
 * faster than sha256 on a board CPU; it guards against corruption, not against an attacker.
 *
 * `regions`: the parts of the disk that will be written (a block map's ranges plus the extents);
 * default the whole image. `bmap`: its per-range checksums are checked against the image.
 */
export async function scanImage(
  info: ImageInfo,
  opts: {
    rangeSize?: number;
    extents?: Extent[];
    regions?: { offset: number; length: number }[];
    bmap?: Bmap;
    /** Keep a sample of this many raw bytes in 1 MiB slices spread over the image (size hint: its raw size if known). */
    sample?: { bytes: number; sizeHint?: number };
    onProgress?: (bytes: number) => void;
    /** Sees every raw chunk in order (before the extents); may hold the pass back by returning a promise (src/image/spool.ts). */
    tap?: (chunk: Uint8Array, pos: number) => Promise<void> | undefined;
    /** Stops the scan (it then rejects with the signal's reason). */
    signal?: AbortSignal;
  } = {},
): Promise<ImageScan> {
  const t0 = performance.now();
  const SLICE = 1 << 20;
  const sampler = opts.sample
    ? new Sampler(Math.max(SLICE, Math.floor((opts.sample.sizeHint ?? 8 * opts.sample.bytes * 8) / (opts.sample.bytes / SLICE) / SLICE) * SLICE), SLICE, opts.sample.bytes)
    : undefined;
  const rangeSize = opts.rangeSize ?? 64 << 20;
  const extents = [...(opts.extents ?? [])].sort((a, b) => a.offset - b.offset);
  const sha = new Bun.CryptoHasher("sha256");
  const md5 = new Bun.CryptoHasher("md5");
  // Whole image: 64 MiB pieces up to the (unknown) end; the last one is cut where the stream ends.
  const pieces = opts.regions ? splitRegions(opts.regions, rangeSize) : undefined;
  let whole = new Bun.CryptoHasher("md5");
  const wholeRanges: VerifyRange[] = [];
  let rangeStart = 0;
  const partial = pieces ? new PieceHasher(pieces, "md5") : undefined;
  const bmapCheck = opts.bmap?.checksumType && opts.bmap.ranges.every((r) => r.checksum) ? new PieceHasher(opts.bmap.ranges, opts.bmap.checksumType) : undefined;
  const zeros = new ZeroRuns();
  let pos = 0;
  let lastReport = 0;
  opts.signal?.throwIfAborted();
  for await (const c of rawChunks(info, opts.signal)) {
    sha.update(c);
    md5.update(c);
    zeros.feed(c, pos);
    sampler?.feed(c, pos);
    bmapCheck?.feed(c, pos);
    const held = opts.tap?.(c, pos);
    if (held) await held;
    const chunk = patchChunk(c, pos, extents);
    const end = pos + c.length;
    if (partial) partial.feed(chunk, pos);
    else {
      let off = 0;
      while (off < chunk.length) {
        const take = Math.min(chunk.length - off, rangeStart + rangeSize - (pos + off));
        whole.update(chunk.subarray(off, off + take));
        off += take;
        if (pos + off === rangeStart + rangeSize) {
          wholeRanges.push({ offset: rangeStart, length: rangeSize, md5: whole.digest("hex") });
          whole = new Bun.CryptoHasher("md5");
          rangeStart += rangeSize;
        }
      }
    }
    pos = end;
    if (opts.onProgress && pos - lastReport >= 16 << 20) {
      opts.onProgress(pos);
      lastReport = pos;
    }
  }
  opts.onProgress?.(pos);
  // The size the file's own index gives (xz) must be what decoded: a decoder that stopped early
  // without saying so is caught here too.
  if (info.rawSizeHint !== undefined && pos !== info.rawSizeHint) {
    throw new UserError(`${info.path} is damaged: it decoded to ${pos} bytes, its index says ${info.rawSizeHint}.`, "Download the image again (and check its published checksum).");
  }
  zeros.end(pos);
  let ranges: VerifyRange[];
  if (pieces && partial) {
    if (partial.digests.length !== pieces.length) {
      throw new UserError(`The image ends at ${pos} bytes, inside the ranges it is meant to write (up to ${pieces.at(-1)!.offset + pieces.at(-1)!.length}).`, "The block map (or the customization) does not belong to this image.");
    }
    ranges = pieces.map((p, i) => ({ ...p, md5: partial.digests[i]! }));
  } else {
    if (pos > rangeStart) wholeRanges.push({ offset: rangeStart, length: pos - rangeStart, md5: whole.digest("hex") });
    ranges = wholeRanges;
  }
  if (opts.bmap) {
    const bm = opts.bmap;
    if (bm.imageSize !== pos) {
      throw new UserError(`The block map ${bm.path} is for an image of ${bm.imageSize} bytes; this image has ${pos}.`, "Use the .bmap made for this image, or flash without it (--no-bmap).");
    }
    if (bmapCheck) {
      const badAt = bm.ranges.findIndex((r, i) => r.checksum !== bmapCheck.digests[i]);
      if (badAt >= 0) {
        const r = bm.ranges[badAt]!;
        throw new UserError(
          `The image does not match its block map ${bm.path}: the ${bm.checksumType} of bytes ${r.offset}-${r.offset + r.length - 1} differs.`,
          "The image or the .bmap is damaged or they do not belong together. Nothing was changed.",
        );
      }
    }
  }
  return {
    rawSize: pos,
    sha256: sha.digest("hex"),
    md5: md5.digest("hex"),
    ranges,
    sample: sampler?.bytes(),
    seconds: (performance.now() - t0) / 1000,
    zeroRuns: zeros.runs,
  };
}

/** The chunk at stream offset `pos` with the extents (sorted or not) written over it; the chunk itself when none falls in it. */
function patchChunk(c: Uint8Array, pos: number, extents: readonly Extent[]): Uint8Array {
  let chunk = c;
  const end = pos + c.length;
  for (const e of extents) {
    const eEnd = e.offset + e.data.length;
    if (eEnd <= pos || e.offset >= end) continue;
    if (chunk === c) chunk = new Uint8Array(c);
    const from = Math.max(pos, e.offset);
    const to = Math.min(end, eEnd);
    chunk.set(e.data.subarray(from - e.offset, to - e.offset), from - pos);
  }
  return chunk;
}

/**
 * The read-back ranges of a scan made without the extents (scanImage of the image alone), made
 * right for the disk content with the extents written over the image: the ranges the extents touch
 * are hashed again from the image's start up to the last of them (boot partition edits: the first
 * range or two), the others are the image's. Equal to scanImage(info, { extents }).ranges.
 */
export async function patchRanges(info: ImageInfo, ranges: readonly VerifyRange[], extents: readonly Extent[]): Promise<VerifyRange[]> {
  const touches = (r: VerifyRange) => extents.some((e) => e.data.length > 0 && e.offset < r.offset + r.length && e.offset + e.data.length > r.offset);
  const rangesEnd = ranges.length ? ranges.at(-1)!.offset + ranges.at(-1)!.length : 0;
  const outside = extents.find((e) => e.offset + e.data.length > rangesEnd);
  if (outside) throw new Error(`an extent at ${outside.offset} (${outside.data.length} bytes) lies beyond the image's end (${rangesEnd})`);
  const touched = ranges.filter(touches);
  const last = touched.at(-1);
  if (!last) return [...ranges];
  const hasher = new PieceHasher(touched, "md5");
  const end = last.offset + last.length;
  let pos = 0;
  for await (const c of rawChunks(info)) {
    hasher.feed(patchChunk(c, pos, extents), pos);
    pos += c.length;
    if (pos >= end) break;
  }
  if (hasher.digests.length !== touched.length) throw new Error(`the image ended at ${pos} bytes while its ranges were hashed again (up to ${end})`);
  const md5 = new Map(touched.map((r, i) => [r.offset, hasher.digests[i]!]));
  return ranges.map((r) => (md5.has(r.offset) ? { ...r, md5: md5.get(r.offset)! } : { ...r }));
}
