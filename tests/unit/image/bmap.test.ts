/**
 * Block maps: parsed from what bmaptool itself writes (the oracle), checked against the image while
 * it is scanned, and turned into the read-back pieces of exactly the written bytes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findBmap, loadBmap, mergeRegions, parseBmap } from "../../../src/image/bmap.ts";
import { scanImage, splitRegions } from "../../../src/image/scan.ts";
import { openImage } from "../../../src/image/source.ts";
import { UserError } from "../../../src/errors.ts";
import { writeSparseImage } from "./_sparse.ts";

const MiB = 1 << 20;
let dir: string;
let img: string;
let bytes: Buffer;
/** Where the sparse test image holds data (everything else is a hole). */
const DATA = [
  { offset: 0, length: 4096 },
  { offset: 3 * MiB + 8192, length: 70 * 1024 },
  { offset: 70 * MiB, length: 2 * MiB + 512 },
];
const SIZE = 80 * MiB + 1024; // not a multiple of the block size: the last block is short

function bmaptool(args: string[]): string {
  const r = Bun.spawnSync(["bmaptool", ...args], { stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`bmaptool ${args.join(" ")}: ${r.stderr.toString()}`);
  return r.stdout.toString();
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "flash-live-bmap-"));
  img = join(dir, "disk.img");
  bytes = writeSparseImage(img, SIZE, DATA, (i, j) => (j * 31 + i * 7 + 1) & 0xff);
  bmaptool(["create", "-o", join(dir, "disk.bmap"), img]);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("parseBmap on bmaptool's own output", () => {
  test("size, block size, and ranges that cover every data byte and no whole hole block", () => {
    const bm = loadBmap(join(dir, "disk.bmap"));
    expect(bm.imageSize).toBe(SIZE);
    expect(bm.blockSize).toBe(4096);
    expect(bm.checksumType).toBe("sha256");
    for (const d of DATA) {
      expect(bm.ranges.some((r) => r.offset <= d.offset && d.offset + d.length <= r.offset + r.length)).toBe(true);
    }
    // Mapped: the data rounded out to 4 KiB blocks, far less than the image.
    const expected = DATA.reduce((n, d) => n + Math.ceil((d.offset + d.length) / 4096) * 4096 - Math.floor(d.offset / 4096) * 4096, 0);
    expect(bm.mappedBytes).toBe(expected);
    // Each range's checksum is the sha256 of its bytes (our reading of offsets and lengths).
    for (const r of bm.ranges) expect(r.checksum).toBe(createHash("sha256").update(bytes.subarray(r.offset, r.offset + r.length)).digest("hex"));
  });

  test("bmaptool's default name for disk.img (disk.bmap) is found", () => {
    expect(findBmap(img)).toBe(join(dir, "disk.bmap"));
  });

  test("malformed maps are refused with the file named and the way out", () => {
    const good = readFileSync(join(dir, "disk.bmap"), "utf8");
    const cases: [string, RegExp][] = [
      [good.replace(/version="2\.\d+"/, 'version="3.0"'), /format version 3/],
      [good.replace(/<BlocksCount>\s*\d+/, "<BlocksCount> 7"), /blocks of 4096 bytes do not make/],
      [good.replace(/<MappedBlocksCount>\s*\d+/, "<MappedBlocksCount> 1"), /declares 1 mapped blocks/],
      ["<bmap>nothing</bmap>", /no <bmap version/],
    ];
    for (const [text, why] of cases) {
      let err: unknown;
      try {
        parseBmap(text, "/x/disk.bmap");
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(UserError);
      expect((err as UserError).message).toContain("/x/disk.bmap");
      expect((err as UserError).message).toMatch(why);
      expect((err as UserError).hint).toContain("--no-bmap");
    }
  });
});

describe("findBmap", () => {
  test("IMAGE.bmap, or the name without the compression suffix, or without .img", () => {
    const d = mkdtempSync(join(tmpdir(), "flash-live-bmapf-"));
    try {
      writeFileSync(join(d, "os.img.xz"), "");
      expect(findBmap(join(d, "os.img.xz"))).toBeUndefined();
      writeFileSync(join(d, "os.bmap"), "");
      expect(findBmap(join(d, "os.img.xz"))).toBe(join(d, "os.bmap"));
      writeFileSync(join(d, "os.img.bmap"), "");
      expect(findBmap(join(d, "os.img.xz"))).toBe(join(d, "os.img.bmap"));
      writeFileSync(join(d, "os.img.xz.bmap"), "");
      expect(findBmap(join(d, "os.img.xz"))).toBe(join(d, "os.img.xz.bmap"));
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});

describe("scanImage with a block map", () => {
  test("read-back pieces are exactly the mapped ranges plus the extents, split at 64 MiB, with their md5", async () => {
    const bm = loadBmap(join(dir, "disk.bmap"));
    const extent = { offset: 40 * MiB, data: new Uint8Array(1024).fill(0xab) }; // in a hole
    const regions = mergeRegions([...bm.ranges, { offset: extent.offset, length: extent.data.length }]);
    const scan = await scanImage(await openImage(img), { regions, bmap: bm, extents: [extent], rangeSize: 64 * MiB });
    const expected = Buffer.from(bytes);
    expected.set(extent.data, extent.offset);
    expect(scan.ranges.map((r) => ({ offset: r.offset, length: r.length }))).toEqual(splitRegions(regions, 64 * MiB));
    for (const r of scan.ranges) expect(r.md5).toBe(createHash("md5").update(expected.subarray(r.offset, r.offset + r.length)).digest("hex"));
    expect(scan.ranges.reduce((n, r) => n + r.length, 0)).toBe(bm.mappedBytes + 1024);
    expect(scan.rawSize).toBe(SIZE);
    expect(scan.sha256).toBe(createHash("sha256").update(bytes).digest("hex"));
  });

  test("an image that differs from its map in one mapped byte is refused, naming the range", async () => {
    const bad = join(dir, "bad.img");
    const b = Buffer.from(bytes);
    b[70 * MiB + 5] = b[70 * MiB + 5]! ^ 1;
    writeFileSync(bad, b);
    const bm = loadBmap(join(dir, "disk.bmap"));
    const err = await scanImage(await openImage(bad), { bmap: bm, regions: bm.ranges }).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toContain("does not match its block map");
    expect(err.message).toContain(`bytes ${70 * MiB}-`);
  });

  test("a map for another size is refused", async () => {
    const bm = { ...loadBmap(join(dir, "disk.bmap")), imageSize: SIZE + 4096 };
    const err = await scanImage(await openImage(img), { bmap: bm }).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toContain(`is for an image of ${SIZE + 4096} bytes; this image has ${SIZE}`);
  });
});

describe("regions", () => {
  test("mergeRegions joins overlapping and touching ones, drops empty ones", () => {
    expect(mergeRegions([{ offset: 10, length: 5 }, { offset: 0, length: 10 }, { offset: 30, length: 0 }, { offset: 12, length: 10 }, { offset: 40, length: 1 }])).toEqual([
      { offset: 0, length: 22 },
      { offset: 40, length: 1 },
    ]);
  });
  test("splitRegions cuts at every multiple of the size", () => {
    expect(splitRegions([{ offset: 60, length: 100 }], 64)).toEqual([
      { offset: 60, length: 4 },
      { offset: 64, length: 64 },
      { offset: 128, length: 32 },
    ]);
  });
});
