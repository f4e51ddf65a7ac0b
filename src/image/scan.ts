import type { ImageInfo } from "./source.ts";
import { rawStream } from "./source.ts";

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
}

/**
 * Read the whole image once on the sending side: proves it decompresses (a truncated or corrupt
 * image fails here, before anything on the board changes), gives its exact size, and the hashes the
 * board's read-back is compared with. md5 for the ranges: the board hashes with busybox, where md5 is
 * 2-4x faster than sha256 on small ARM cores; it guards against corruption, not against an attacker.
 */
export async function scanImage(
  info: ImageInfo,
  opts: { rangeSize?: number; extents?: Extent[]; onProgress?: (bytes: number) => void } = {},
): Promise<ImageScan> {
  const rangeSize = opts.rangeSize ?? 64 << 20;
  const extents = [...(opts.extents ?? [])].sort((a, b) => a.offset - b.offset);
  const sha = new Bun.CryptoHasher("sha256");
  const md5 = new Bun.CryptoHasher("md5");
  let range = new Bun.CryptoHasher("md5");
  const ranges: VerifyRange[] = [];
  let pos = 0;
  let rangeStart = 0;
  let lastReport = 0;
  for await (const c of rawStream(info) as AsyncIterable<Buffer>) {
    sha.update(c);
    md5.update(c);
    let chunk: Uint8Array = c;
    const end = pos + c.length;
    for (const e of extents) {
      const eEnd = e.offset + e.data.length;
      if (eEnd <= pos || e.offset >= end) continue;
      if (chunk === c) chunk = new Uint8Array(c);
      const from = Math.max(pos, e.offset);
      const to = Math.min(end, eEnd);
      chunk.set(e.data.subarray(from - e.offset, to - e.offset), from - pos);
    }
    let off = 0;
    while (off < chunk.length) {
      const take = Math.min(chunk.length - off, rangeStart + rangeSize - (pos + off));
      range.update(chunk.subarray(off, off + take));
      off += take;
      if (pos + off === rangeStart + rangeSize) {
        ranges.push({ offset: rangeStart, length: rangeSize, md5: range.digest("hex") });
        range = new Bun.CryptoHasher("md5");
        rangeStart += rangeSize;
      }
    }
    pos = end;
    if (opts.onProgress && pos - lastReport >= 16 << 20) {
      opts.onProgress(pos);
      lastReport = pos;
    }
  }
  if (pos > rangeStart) ranges.push({ offset: rangeStart, length: pos - rangeStart, md5: range.digest("hex") });
  opts.onProgress?.(pos);
  return { rawSize: pos, sha256: sha.digest("hex"), md5: md5.digest("hex"), ranges };
}
