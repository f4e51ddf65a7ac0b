/**
 * Packing (src/image/pack.ts): the scan finds the image's zero blocks, the layout splits what is
 * written into sent ("d") and zero-filled ("z") ranges, the filter sends exactly the d bytes, and
 * the helper's repair finds each bad range's bytes in a packed copy (its awk, run by busybox).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { busyboxFor } from "../../../src/assets/busybox.ts";
import { layoutText, MAX_PACK_RANGES, type PackLayout, packFilter, packLayout } from "../../../src/image/pack.ts";
import { scanImage, ZERO_BLOCK } from "../../../src/image/scan.ts";
import { openImage } from "../../../src/image/source.ts";
import { writeSparseImage } from "./_sparse.ts";

const MiB = 1 << 20;
const SIZE = 40 * MiB + 3072; // the last block is short (6 sectors)
/** Non-zero bytes of the test image (everything else is zero). */
const DATA = [
  { offset: 0, length: 512 },
  { offset: 3 * MiB - 1, length: 2 }, // straddles a block boundary: blocks 2 and 3 are data
  { offset: 10 * MiB, length: 5 * MiB },
  { offset: 20 * MiB + 12345, length: 1 },
  { offset: 40 * MiB + 100, length: 10 }, // in the short last block
];
let dir: string;
let img: string;
let bytes: Buffer;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "flash-live-pack-"));
  img = join(dir, "disk.img");
  bytes = writeSparseImage(img, SIZE, DATA, (i, j) => ((i + 1) * 37 + j) % 251 || 1);
  Bun.spawnSync(["sh", "-c", `gzip -1 -c "${img}" > "${img}.gz"`]);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The oracle: every ZERO_BLOCK block compared with zeros, byte for byte, merged into runs. */
function zeroRunsOf(b: Buffer): { offset: number; length: number }[] {
  const runs: { offset: number; length: number }[] = [];
  for (let off = 0; off < b.length; off += ZERO_BLOCK) {
    const end = Math.min(b.length, off + ZERO_BLOCK);
    let zero = true;
    for (let i = off; i < end && zero; i++) zero = b[i] === 0;
    if (!zero) continue;
    const last = runs.at(-1);
    if (last && last.offset + last.length === off) last.length += end - off;
    else runs.push({ offset: off, length: end - off });
  }
  return runs;
}

/** What the helper writes for a layout from a packed stream: d ranges from the stream, z zeros. */
function applyLayout(layout: PackLayout, stream: Buffer, disk: Buffer): void {
  let at = 0;
  for (const r of layout.ranges) {
    if (r.zero) disk.fill(0, r.offset, r.offset + r.length);
    else {
      stream.copy(disk, r.offset, at, at + r.length);
      at += r.length;
    }
  }
  expect(at).toBe(stream.length);
}

async function collect(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describe("zero runs found by the scan", () => {
  test("raw and .gz: the same runs as comparing every 1 MiB block with zeros", async () => {
    const want = zeroRunsOf(bytes);
    expect(want.length).toBeGreaterThan(2);
    for (const path of [img, `${img}.gz`]) {
      const scan = await scanImage(await openImage(path));
      expect(scan.zeroRuns).toEqual(want);
      expect(scan.rawSize).toBe(SIZE);
    }
  });
});

describe("packLayout", () => {
  test("the whole image: d and z ranges tile it, z exactly the zero runs", async () => {
    const runs = zeroRunsOf(bytes);
    const layout = packLayout(SIZE, runs)!;
    let at = 0;
    for (const r of layout.ranges) {
      expect(r.offset).toBe(at);
      at += r.length;
    }
    expect(at).toBe(SIZE);
    expect(layout.ranges.filter((r) => r.zero).map(({ offset, length }) => ({ offset, length }))).toEqual(runs);
    expect(layout.dataBytes + layout.zeroBytes).toBe(SIZE);
    // No two neighbours of the same kind.
    for (let i = 1; i < layout.ranges.length; i++) expect(layout.ranges[i]!.zero).not.toBe(layout.ranges[i - 1]!.zero);
  });

  test("nothing to gain without zero runs or a block map: undefined", () => {
    expect(packLayout(SIZE, [])).toBeUndefined();
  });

  test("with a block map: only its ranges, cut by the zero runs; holes are in neither", () => {
    const regions = [
      { offset: 0, length: 4 * MiB },
      { offset: 9 * MiB + 4096, length: 8 * MiB },
      { offset: 30 * MiB, length: 4096 },
    ];
    const runs = zeroRunsOf(bytes);
    const layout = packLayout(SIZE, runs, regions)!;
    const covered = layout.ranges.reduce((n, r) => n + r.length, 0);
    expect(covered).toBe(regions.reduce((n, r) => n + r.length, 0));
    for (const r of layout.ranges) {
      expect(regions.some((g) => r.offset >= g.offset && r.offset + r.length <= g.offset + g.length)).toBe(true);
      const slice = bytes.subarray(r.offset, r.offset + r.length);
      if (r.zero) expect(slice.every((b) => b === 0)).toBe(true);
    }
    // 30 MiB is in a zero run: that whole mapped range is written as zeros, nothing of it is sent.
    expect(layout.ranges.find((r) => r.offset === 30 * MiB)).toEqual({ offset: 30 * MiB, length: 4096, zero: true });
  });

  test(`at most ${MAX_PACK_RANGES} ranges: short zero runs are sent as data instead`, () => {
    // 2000 zero runs of 1 MiB between 1 MiB of data, and one long run.
    const runs = Array.from({ length: 2000 }, (_, i) => ({ offset: (2 * i + 1) * MiB, length: MiB }));
    runs.push({ offset: 4000 * MiB, length: 100 * MiB });
    const layout = packLayout(4100 * MiB, runs)!;
    expect(layout.ranges.length).toBeLessThanOrEqual(MAX_PACK_RANGES);
    expect(layout.zeroBytes).toBe(100 * MiB);
    expect(layout.dataBytes).toBe(4000 * MiB);
  });
});

describe("packFilter", () => {
  test("sends exactly the d bytes, whatever the chunking; the helper's model rebuilds the image", async () => {
    const layout = packLayout(SIZE, zeroRunsOf(bytes))!;
    for (const sizes of [[100, 1, SIZE], [4096], [65536 + 17, 3], [3 * MiB + 5, MiB - 1]]) {
      const chunks: Buffer[] = [];
      for (let off = 0, i = 0; off < bytes.length; i++) {
        const n = sizes[i % sizes.length]!;
        chunks.push(bytes.subarray(off, Math.min(bytes.length, off + n)));
        off += n;
      }
      const sent = await collect(Readable.from(chunks).pipe(packFilter(layout)));
      expect(sent.length).toBe(layout.dataBytes);
      const disk = Buffer.alloc(SIZE, 0xee);
      applyLayout(layout, sent, disk);
      expect(disk.equals(bytes)).toBe(true);
    }
  });
});

describe("flash.sh's repair_pieces (busybox awk)", () => {
  /** The oracle: each bad range's pieces, with their offset in the packed stream. */
  function piecesOf(layout: PackLayout, bad: { offset: number; length: number }): string[] {
    const out: string[] = [];
    let p = 0;
    for (const r of layout.ranges) {
      const from = Math.max(bad.offset, r.offset);
      const to = Math.min(bad.offset + bad.length, r.offset + r.length);
      if (to > from) out.push(r.zero ? `${from} ${to - from} -` : `${from} ${to - from} ${p + from - r.offset}`);
      if (!r.zero) p += r.length;
    }
    return out;
  }

  test("agrees with the layout for ranges across d and z, beyond 4 GiB", async () => {
    const bb = join(dir, "busybox");
    writeFileSync(bb, await busyboxFor("x86_64"));
    Bun.spawnSync(["chmod", "700", bb]);
    const script = readFileSync(join(import.meta.dir, "../../../src/helpers/flash.sh"), "utf8");
    const fn = script.match(/^repair_pieces\(\) \{[\s\S]*?\n\}\n/m)?.[0];
    expect(fn).toBeDefined();
    const G = 1024 * MiB;
    const layout: PackLayout = {
      ranges: [
        { offset: 0, length: 4 * MiB, zero: false },
        { offset: 4 * MiB, length: G, zero: true },
        { offset: G + 4 * MiB, length: 8 * MiB, zero: false },
        { offset: G + 12 * MiB, length: 4 * G, zero: true },
        { offset: 5 * G + 12 * MiB, length: 3 * MiB, zero: false },
        // a gap (a block map's hole)
        { offset: 5 * G + 20 * MiB, length: MiB, zero: false },
      ],
      dataBytes: 16 * MiB,
      zeroBytes: 5 * G,
    };
    writeFileSync(join(dir, "layout"), layoutText(layout));
    const bad = [
      { offset: 0, length: 64 * MiB },
      { offset: G, length: 64 * MiB },
      { offset: 5 * G, length: 64 * MiB },
    ];
    const input = bad.map((b) => `${b.offset} ${b.length} 0123456789abcdef0123456789abcdef\n`).join("");
    const r = Bun.spawnSync([bb, "sh", "-c", `BB=${bb}; PACKED=${join(dir, "layout")}\n${fn}\nrepair_pieces`], { stdin: Buffer.from(input) });
    expect(r.stderr.toString()).toBe("");
    const got = r.stdout.toString().trim().split("\n");
    expect(got).toEqual(bad.flatMap((b) => piecesOf(layout, b)));
    // Without a layout, each range is its own source (a copy of the whole image).
    const plain = Bun.spawnSync([bb, "sh", "-c", `BB=${bb}; PACKED=\n${fn}\nrepair_pieces`], { stdin: Buffer.from(input) });
    expect(plain.stdout.toString().trim().split("\n")).toEqual(bad.map((b) => `${b.offset} ${b.length} ${b.offset}`));
  });
});
