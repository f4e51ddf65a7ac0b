import { Transform } from "node:stream";

/**
 * Packing: when this side makes the bytes the board decodes (raw, or gzip -1 of the image), it
 * sends only the parts the board must write with content. A disk image is mostly free space (the
 * 1 GiB test image B: 727 of its 1024 MiB are zero blocks), and on a board the decode and the pipe
 * cost CPU per byte, zeros included; written from /dev/zero on the board they cost only the disk.
 * With a block map, the unmapped ranges are not sent either (bmaptool's "only mapped ranges").
 *
 * The layout tells the helper what each part of the disk gets, in disk order: "d" ranges take the
 * next bytes of the stream, "z" ranges are written with zeros, anything else is left as it is.
 */
export interface PackRange {
  offset: number;
  length: number;
  zero: boolean;
}

export interface PackLayout {
  ranges: PackRange[];
  /** Bytes the stream carries (the "d" ranges). */
  dataBytes: number;
  /** Bytes the board writes with zeros (the "z" ranges). */
  zeroBytes: number;
}

/** Each line costs the board's helper a process or two: past this, short zero runs stay data. */
export const MAX_PACK_RANGES = 512;

/**
 * The layout of the regions to write (a block map's ranges, else the whole image) split by the
 * image's zero runs. Undefined when packing saves nothing (no zero run inside, no block map).
 */
export function packLayout(
  rawSize: number,
  zeroRuns: readonly { offset: number; length: number }[],
  regions?: readonly { offset: number; length: number }[],
): PackLayout | undefined {
  const write = regions ?? [{ offset: 0, length: rawSize }];
  for (let minZero = 0; ; minZero = Math.max(1 << 20, minZero * 2)) {
    const ranges = split(write, zeroRuns.filter((z) => z.length >= minZero));
    if (ranges.length <= MAX_PACK_RANGES || minZero >= rawSize) {
      let dataBytes = 0;
      let zeroBytes = 0;
      for (const r of ranges) {
        if (r.zero) zeroBytes += r.length;
        else dataBytes += r.length;
      }
      if (!regions && zeroBytes === 0) return undefined;
      return { ranges, dataBytes, zeroBytes };
    }
  }
}

/** Sorted, non-overlapping regions cut by sorted zero runs into d/z ranges (adjacent d ranges merged). */
function split(regions: readonly { offset: number; length: number }[], zeros: readonly { offset: number; length: number }[]): PackRange[] {
  const out: PackRange[] = [];
  const push = (offset: number, length: number, zero: boolean) => {
    if (length <= 0) return;
    const last = out.at(-1);
    if (last && last.zero === zero && last.offset + last.length === offset) last.length += length;
    else out.push({ offset, length, zero });
  };
  let zi = 0;
  for (const r of regions) {
    let at = r.offset;
    const end = r.offset + r.length;
    while (zi < zeros.length && zeros[zi]!.offset + zeros[zi]!.length <= at) zi++;
    for (let k = zi; k < zeros.length && zeros[k]!.offset < end; k++) {
      const z = zeros[k]!;
      const from = Math.max(at, z.offset);
      const to = Math.min(end, z.offset + z.length);
      if (to <= from) continue;
      push(at, from - at, false);
      push(from, to - from, true);
      at = to;
    }
    push(at, end - at, false);
  }
  return out;
}

/** The helper's layout file: "offset length d|z" lines. */
export function layoutText(layout: PackLayout): string {
  return layout.ranges.map((r) => `${r.offset} ${r.length} ${r.zero ? "z" : "d"}\n`).join("");
}

/** Passes on only the bytes of the layout's "d" ranges, from a stream of the whole raw image. */
export function packFilter(layout: PackLayout): Transform {
  const data = layout.ranges.filter((r) => !r.zero);
  let i = 0;
  let pos = 0;
  return new Transform({
    highWaterMark: 4 << 20,
    transform(chunk: Buffer, _enc, cb) {
      const end = pos + chunk.length;
      while (i < data.length) {
        const r = data[i]!;
        const rEnd = r.offset + r.length;
        if (r.offset >= end) break;
        const from = Math.max(pos, r.offset);
        const to = Math.min(end, rEnd);
        if (to > from) this.push(chunk.subarray(from - pos, to - pos));
        if (rEnd > end) break;
        i++;
      }
      pos = end;
      cb();
    },
  });
}
