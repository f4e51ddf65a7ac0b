/**
 * bmaptool's block map (.bmap, format 1.x and 2.0): which blocks of an image hold data. With one,
 * flash-live writes and reads back only the mapped ranges; the rest of the disk keeps whatever it
 * held (free space of the image's filesystems, by the map's promise).
 */
import { existsSync, readFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { UserError } from "../errors.ts";

export interface BmapRange {
  /** Byte offset and length in the image. */
  offset: number;
  length: number;
  /** Checksum of the range's bytes from the map (sha256 or sha1), if it has one. */
  checksum?: string;
}

export interface Bmap {
  path: string;
  imageSize: number;
  blockSize: number;
  checksumType?: "sha256" | "sha1";
  /** Sorted, non-overlapping. */
  ranges: BmapRange[];
  mappedBytes: number;
}

const COMPRESSED = /\.(xz|gz|zst|bz2|lzo)$/;

/** The .bmap next to an image, as bmaptool looks for it: IMAGE.bmap, or without the compression suffix and/or .img. */
export function findBmap(imagePath: string): string | undefined {
  const dir = dirname(imagePath);
  const name = basename(imagePath);
  const bare = name.replace(COMPRESSED, "");
  const candidates = [`${name}.bmap`, `${bare}.bmap`, `${bare.replace(/\.img$/, "")}.bmap`];
  for (const c of candidates) {
    const p = join(dir, c);
    if (existsSync(p)) return p;
  }
  return undefined;
}

function tag(text: string, name: string): string | undefined {
  return new RegExp(`<${name}>\\s*([^<]*?)\\s*</${name}>`).exec(text)?.[1];
}

function int(text: string, name: string, path: string): number {
  const v = tag(text, name);
  if (v === undefined || !/^\d+$/.test(v)) throw bad(path, `<${name}> is missing or not a number`);
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw bad(path, `<${name}> is too large`);
  return n;
}

function bad(path: string, why: string): UserError {
  return new UserError(`${path} is not a usable block map: ${why}.`, "Recreate it with `bmaptool create IMAGE > IMAGE.bmap`, or flash without it (--no-bmap).");
}

export function parseBmap(text: string, path: string): Bmap {
  const root = /<bmap\s+version\s*=\s*"(\d+)\.(\d+)"\s*>/.exec(text);
  if (!root) throw bad(path, "no <bmap version=...> element");
  if (root[1] !== "1" && root[1] !== "2") throw bad(path, `format version ${root[1]}.${root[2]} is not supported (1.x and 2.x are)`);
  const imageSize = int(text, "ImageSize", path);
  const blockSize = int(text, "BlockSize", path);
  const blocksCount = int(text, "BlocksCount", path);
  if (blockSize === 0 || blockSize % 512 !== 0) throw bad(path, `block size ${blockSize} is not a multiple of 512`);
  if (Math.ceil(imageSize / blockSize) !== blocksCount) throw bad(path, `${blocksCount} blocks of ${blockSize} bytes do not make ${imageSize} bytes`);
  const type = tag(text, "ChecksumType");
  const checksumType = type === undefined ? (root[1] === "1" ? "sha1" : undefined) : type;
  if (checksumType !== undefined && checksumType !== "sha256" && checksumType !== "sha1") throw bad(path, `checksum type ${checksumType} is not supported`);
  const map = /<BlockMap>([\s\S]*)<\/BlockMap>/.exec(text)?.[1];
  if (map === undefined) throw bad(path, "no <BlockMap>");
  const ranges: BmapRange[] = [];
  for (const m of map.matchAll(/<Range([^>]*)>\s*(\d+)(?:\s*-\s*(\d+))?\s*<\/Range>/g)) {
    const first = Number(m[2]);
    const last = m[3] === undefined ? first : Number(m[3]);
    if (last < first || last >= blocksCount) throw bad(path, `range ${m[2]}-${m[3] ?? m[2]} is outside the image's ${blocksCount} blocks`);
    const checksum = /(?:chksum|sha1)\s*=\s*"([0-9a-fA-F]+)"/.exec(m[1]!)?.[1]?.toLowerCase();
    const offset = first * blockSize;
    const length = Math.min((last + 1) * blockSize, imageSize) - offset;
    const prev = ranges.at(-1);
    if (prev && offset < prev.offset + prev.length) throw bad(path, "ranges overlap or are out of order");
    ranges.push({ offset, length, checksum });
  }
  const declared = tag(text, "MappedBlocksCount");
  const mappedBytes = ranges.reduce((n, r) => n + r.length, 0);
  const mappedBlocks = ranges.reduce((n, r) => n + Math.ceil(r.length / blockSize), 0);
  if (declared !== undefined && Number(declared) !== mappedBlocks) throw bad(path, `it declares ${declared} mapped blocks but its ranges hold ${mappedBlocks}`);
  return { path, imageSize, blockSize, checksumType: checksumType as Bmap["checksumType"], ranges, mappedBytes };
}

export function loadBmap(path: string): Bmap {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new UserError(`Cannot read the block map ${path}: ${(e as Error).message}.`, "Check the path, or flash without it (--no-bmap).");
  }
  return parseBmap(text, path);
}

/** Merge sorted regions that overlap or touch; input need not be sorted. */
export function mergeRegions(regions: { offset: number; length: number }[]): { offset: number; length: number }[] {
  const sorted = regions.filter((r) => r.length > 0).sort((a, b) => a.offset - b.offset);
  const out: { offset: number; length: number }[] = [];
  for (const r of sorted) {
    const last = out.at(-1);
    if (last && r.offset <= last.offset + last.length) last.length = Math.max(last.length, r.offset + r.length - last.offset);
    else out.push({ offset: r.offset, length: r.length });
  }
  return out;
}
