/**
 * The image pass that runs beside the board probe (src/modes/flash.ts preflight): scanning the image
 * alone and then hashing again the ranges the boot partition edit touches (patchRanges) must give
 * exactly the ranges of one scan with the edit applied; and the pass stops when told to.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Extent, patchRanges, scanImage } from "../../../src/image/scan.ts";
import { openImage } from "../../../src/image/source.ts";
import { writeSparseImage } from "./_sparse.ts";

const MiB = 1 << 20;
const dir = mkdtempSync(join(tmpdir(), "flash-live-scan-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// 9.5 MiB: data at the start, in the middle and at the short last range; holes between.
const raw = join(dir, "i.img");
writeSparseImage(raw, 9.5 * MiB, [{ offset: 0, length: 3 * MiB + 100 }, { offset: 5 * MiB, length: 777 }, { offset: 9 * MiB, length: MiB / 2 }], (i, j) => (j * 31 + i * 7 + (j >> 9)) & 255);
spawnSync("gzip", ["-k", "-1", raw]);

const fill = (n: number, v: number) => new Uint8Array(n).fill(v);
const cases: [string, Extent[]][] = [
  ["none", []],
  ["one sector in the first range", [{ offset: 512, data: fill(512, 0xaa) }]],
  ["across a range boundary, and one in a hole", [{ offset: 2 * MiB - 100, data: fill(300, 1) }, { offset: 6 * MiB + 4096, data: fill(4096, 2) }]],
  ["unsorted, touching the last (short) range", [{ offset: 9 * MiB + 10, data: fill(10, 3) }, { offset: 0, data: fill(1, 4) }]],
];

describe("patchRanges", () => {
  for (const file of [raw, `${raw}.gz`]) {
    for (const [name, extents] of cases) {
      test(`${file.endsWith(".gz") ? ".img.gz" : ".img"}, extents: ${name}: equal to one scan with the extents`, async () => {
        const image = await openImage(file);
        const together = await scanImage(image, { rangeSize: MiB, extents });
        const alone = await scanImage(image, { rangeSize: MiB });
        expect(alone.ranges).toHaveLength(10);
        const patched = await patchRanges(image, alone.ranges, extents);
        expect(patched).toEqual(together.ranges);
        // Only the touched ranges changed.
        const changed = patched.filter((r, i) => r.md5 !== alone.ranges[i]!.md5).map((r) => r.offset / MiB);
        const touched = alone.ranges.filter((r) => extents.some((e) => e.offset < r.offset + r.length && e.offset + e.data.length > r.offset)).map((r) => r.offset / MiB);
        expect(changed).toEqual(touched);
        // The image's own identity does not depend on the extents.
        expect([together.sha256, together.md5]).toEqual([alone.sha256, alone.md5]);
      });
    }
  }

  test("an extent beyond the image's end is a bug, not a silent miss", async () => {
    const image = await openImage(raw);
    const alone = await scanImage(image, { rangeSize: MiB });
    await expect(patchRanges(image, alone.ranges, [{ offset: 10 * MiB, data: fill(1, 1) }])).rejects.toThrow("beyond the image's end");
  });
});

describe("scanImage", () => {
  test("stops when its signal aborts, with the signal's reason", async () => {
    const image = await openImage(`${raw}.gz`);
    const stop = new AbortController();
    const p = scanImage(image, { rangeSize: MiB, onProgress: () => {} });
    const q = scanImage(image, { rangeSize: MiB, signal: stop.signal });
    stop.abort(new Error("the board refused"));
    await expect(q).rejects.toThrow("the board refused");
    expect((await p).rawSize).toBe(9.5 * MiB);
    const already = new AbortController();
    already.abort(new Error("before"));
    await expect(scanImage(image, { signal: already.signal })).rejects.toThrow("before");
  });
});

describe("the sample kept for the transport measurement", () => {
  // A raw image is read into one reused buffer: the sample must hold copies of its slices, not views
  // of a buffer that the next read overwrites.
  const size = 40 * MiB;
  const sampled = join(dir, "s.img");
  writeSparseImage(sampled, size, [{ offset: 0, length: size }], (_i, j) => (j * 7 + (j >> 11) + (j >> 20) * 29) & 255);
  spawnSync("gzip", ["-k", "-1", sampled]);
  const bytes = Bun.file(sampled).bytes();

  for (const file of ["s.img", "s.img.gz"]) {
    test(`${file}: four 1 MiB slices, 10 MiB apart, equal to the image's bytes there`, async () => {
      const s = await scanImage(await openImage(join(dir, file)), { sample: { bytes: 4 * MiB, sizeHint: size } });
      const img = await bytes;
      const expected = Buffer.concat([0, 10, 20, 30].map((m) => img.subarray(m * MiB, (m + 1) * MiB)));
      expect(s.sample!.length).toBe(4 * MiB);
      expect(Buffer.compare(Buffer.from(s.sample!), expected)).toBe(0);
    });
  }
});

describe("a .xz with one byte flipped in its compressed data", () => {
  // xz says so by its exit status, after the output it could make: the pass waits for it (before,
  // it ended with the output and took the damaged image for a shorter, intact one: checked).
  // (busybox's xzcat, the board's decoder, is never the check: tests/e2e/faults.test.ts.)
  test("the image pass refuses it", async () => {
    // Periodic data, compressed to ~21 KB: the flipped byte lands inside LZMA data.
    const src = join(dir, "flip.img");
    writeSparseImage(src, 4 * MiB, [{ offset: 0, length: 4 * MiB }], (_i, j) => ((j * 2654435761) >>> 13) & 255);
    spawnSync("xz", ["-k", "-1", "-f", src]);
    const bytes = await Bun.file(`${src}.xz`).bytes();
    bytes[Math.floor(bytes.length / 2)]! ^= 0x01;
    const bad = join(dir, "flip.img.xz");
    await Bun.write(bad, bytes);
    await expect(scanImage(await openImage(bad))).rejects.toThrow(/damaged/);
  });
});
