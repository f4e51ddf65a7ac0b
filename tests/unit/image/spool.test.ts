/**
 * The ramfs copy made during the image pass (src/image/spool.ts). Oracle: the busybox the board runs
 * (`lzop -dc`, the same build flash-live carries for this machine) decodes the file to exactly the
 * "d" ranges of the pack layout the flash sends with it, in order; the file's md5 is the one reported.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, ftruncateSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { estimateTransports, pickTransport, type Rates } from "../../../src/core/transport.ts";
import { encoderFor } from "../../../src/image/filter.ts";
import { MAX_PACK_RANGES, packLayout } from "../../../src/image/pack.ts";
import { scanImage } from "../../../src/image/scan.ts";
import { openImage } from "../../../src/image/source.ts";
import { MAX_SKIPPED, Spool, skipThreshold } from "../../../src/image/spool.ts";
import { writeSparseImage } from "./_sparse.ts";

const MiB = 1 << 20;
const dir = mkdtempSync(join(tmpdir(), "flash-live-spool-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// 9.5 MiB: data in blocks 0-3, a few bytes in block 5, the short last block; zero blocks 4, 6-8.
const raw = join(dir, "i.img");
const bytes = writeSparseImage(raw, 9.5 * MiB, [{ offset: 0, length: 3 * MiB + 100 }, { offset: 5 * MiB + 4096, length: 777 }, { offset: 9 * MiB, length: 1000 }], (i, j) => (j * 31 + i * 7 + (j >> 9)) & 255);
spawnSync("xz", ["-k", "-1", raw]);
// The same with its short last block all zeros.
const rawZeroTail = join(dir, "z.img");
const bytesZeroTail = writeSparseImage(rawZeroTail, 9.5 * MiB, [{ offset: MiB, length: 2 * MiB }], (_i, j) => (j * 13) & 255);

async function spoolOf(file: string, maxBytes = Number.POSITIVE_INFINITY, base = dir, maxSkipped?: number) {
  const enc = (await encoderFor("lzo"))!;
  const spool = Spool.start(enc, maxBytes, base, maxSkipped);
  if (typeof spool === "string") throw new Error(spool);
  const image = await openImage(file);
  const scan = await scanImage(image, { rangeSize: MiB, tap: (c, pos) => spool.feed(c, pos) });
  const made = await spool.end(scan.rawSize);
  return { spool, scan, made, enc };
}

/** writeSparseImage without reading the file back (too large to hold). */
function writeSparseImageNoRead(path: string, size: number, data: readonly { offset: number; length: number }[]): void {
  const fd = openSync(path, "w");
  try {
    ftruncateSync(fd, size);
    for (const [i, d] of data.entries()) writeSync(fd, Buffer.alloc(d.length, (i % 250) + 1), 0, d.length, d.offset);
  } finally {
    closeSync(fd);
  }
}

function decode(enc: string[], path: string): Buffer {
  const r = spawnSync(enc[0]!, ["lzop", "-dc", path], { maxBuffer: 256 << 20 });
  expect(r.status).toBe(0);
  return r.stdout;
}

describe("Spool", () => {
  for (const [name, file, image] of [
    [".img (the pass reuses one buffer)", raw, bytes],
    [".img.xz (chunks not on block boundaries)", `${raw}.xz`, bytes],
    [".img whose short last block is zeros", rawZeroTail, bytesZeroTail],
  ] as const) {
    test(`${name}: the file decodes to the pack layout's data ranges; private; removed`, async () => {
      const { spool, scan, made, enc } = await spoolOf(file);
      expect(spool.problem).toBeUndefined();
      expect(made).toBeDefined();
      const layout = packLayout(scan.rawSize, scan.zeroRuns)!;
      const data = Buffer.concat(layout.ranges.filter((r) => !r.zero).map((r) => image.subarray(r.offset, r.offset + r.length)));
      expect(made!.rawBytes).toBe(layout.dataBytes);
      expect(made!.bytes).toBe(statSync(made!.path).size);
      expect(new Bun.CryptoHasher("md5").update(readFileSync(made!.path)).digest("hex")).toBe(made!.md5);
      expect(Buffer.compare(decode(enc, made!.path), data)).toBe(0);
      expect(statSync(made!.path).mode & 0o777).toBe(0o600);
      expect(statSync(dirname(made!.path)).mode & 0o777).toBe(0o700);
      spool.remove();
      expect(existsSync(dirname(made!.path))).toBe(false);
      spool.remove();
    }, 60_000);
  }

  test("more zero runs than a layout may have: the first ones left out, then only long ones, then none; the file is the data ranges of the layout they make", async () => {
    // Data blocks between zero runs of 1, 2, 5, 20, 70, 1, 70 and 3 MiB (the last one the image's tail).
    const runs = [1, 2, 5, 20, 70, 1, 70, 3];
    const data: { offset: number; length: number }[] = [];
    let at = 0;
    for (const mib of runs) {
      data.push({ offset: at + 1000, length: 5000 });
      at += MiB + mib * MiB;
    }
    const file = join(dir, "runs.img");
    const image = writeSparseImage(file, at, data, (i, j) => (i * 11 + j) % 253 || 1);
    // At most 4 runs left out: any run for the first 2, then 4 blocks, 16 blocks, and past 4 none.
    expect([0, 1, 2, 3, 4].map((k) => skipThreshold(k, 4) / MiB)).toEqual([1, 1, 4, 16, Number.POSITIVE_INFINITY]);
    const { spool, scan, made, enc } = await spoolOf(file, Number.POSITIVE_INFINITY, dir, 4);
    expect(scan.zeroRuns.map((r) => r.length / MiB)).toEqual(runs);
    // 1 (any), 2 (any), 5 (>= 4), 20 (>= 16): then the budget is spent and the 70s stay data.
    expect(made!.zeroRuns.map((r) => r.length / MiB)).toEqual([1, 2, 5, 20]);
    for (const r of made!.zeroRuns) expect(scan.zeroRuns).toContainEqual(r);
    const layout = packLayout(scan.rawSize, made!.zeroRuns)!;
    expect(layout.ranges.length).toBeLessThanOrEqual(2 * 4 + 1);
    expect(made!.rawBytes).toBe(layout.dataBytes);
    const expected = Buffer.concat(layout.ranges.filter((r) => !r.zero).map((r) => image.subarray(r.offset, r.offset + r.length)));
    expect(Buffer.compare(decode(enc, made!.path), expected)).toBe(0);
    spool.remove();
  }, 60_000);

  test(`a fragmented image (${MAX_SKIPPED + 45} runs of 1 MiB, then one of 9): the layout stays within ${MAX_PACK_RANGES} ranges, the long run is left out`, async () => {
    const n = MAX_SKIPPED + 45;
    const data: { offset: number; length: number }[] = [];
    for (let i = 0; i < n; i++) data.push({ offset: 2 * i * MiB + 7, length: 300 });
    const file = join(dir, "fragmented.img");
    const size = 2 * n * MiB + 8 * MiB;
    writeSparseImageNoRead(file, size, data);
    const { spool, scan, made, enc } = await spoolOf(file);
    expect(scan.zeroRuns.length).toBe(n);
    expect(scan.zeroRuns.at(-1)!.length).toBe(9 * MiB);
    // Runs of one block fill the first half of the budget; the last one is long enough for the next tier.
    expect(made!.zeroRuns.length).toBe(Math.ceil(MAX_SKIPPED / 2) + 1);
    expect(made!.zeroRuns.at(-1)).toEqual(scan.zeroRuns.at(-1)!);
    const layout = packLayout(scan.rawSize, made!.zeroRuns)!;
    expect(layout.ranges.length).toBeLessThanOrEqual(MAX_PACK_RANGES);
    expect(made!.rawBytes).toBe(layout.dataBytes);
    // The decoded file against the image's d ranges, both hashed as they stream.
    const want = new Bun.CryptoHasher("md5");
    const fd = openSync(file, "r");
    try {
      for (const r of layout.ranges.filter((x) => !x.zero)) {
        for (let off = 0; off < r.length; off += 8 * MiB) {
          const b = Buffer.alloc(Math.min(8 * MiB, r.length - off));
          readSync(fd, b, 0, b.length, r.offset + off);
          want.update(b);
        }
      }
    } finally {
      closeSync(fd);
    }
    const got = spawnSync("sh", ["-c", '"$1" lzop -dc "$2" | md5sum', "-", enc[0]!, made!.path]);
    expect(got.stdout.toString().split(" ")[0]).toBe(want.digest("hex"));
    spool.remove();
    rmSync(file);
  }, 120_000);

  test("a copy that outgrows its bound is given up (the pass still completes) and leaves nothing", async () => {
    const before = readdirSync(dir).length;
    const { spool, scan, made } = await spoolOf(raw, 64 << 10);
    expect(scan.rawSize).toBe(9.5 * MiB);
    expect(made).toBeUndefined();
    expect(spool.problem).toContain("outgrew");
    spool.remove();
    expect(readdirSync(dir).length).toBe(before);
  }, 60_000);

  test("lowered after the start (the board's /dev/shm room): given up too", async () => {
    const enc = (await encoderFor("lzo"))!;
    const spool = Spool.start(enc, Number.POSITIVE_INFINITY, dir) as Spool;
    spool.cap(1000);
    const image = await openImage(raw);
    const scan = await scanImage(image, { tap: (c, pos) => spool.feed(c, pos) });
    expect(await spool.end(scan.rawSize)).toBeUndefined();
    expect(spool.problem).toContain("outgrew");
    spool.remove();
  }, 60_000);

  test("an encoder that fails: no file, the reason kept", async () => {
    const spool = Spool.start(["sh", "-c", "cat > /dev/null; exit 3"], Number.POSITIVE_INFINITY, dir) as Spool;
    const image = await openImage(raw);
    const scan = await scanImage(image, { tap: (c, pos) => spool.feed(c, pos) });
    expect(await spool.end(scan.rawSize)).toBeUndefined();
    expect(spool.problem).toContain("exited with 3");
    spool.remove();
  }, 60_000);

  test("removed while the pass waits on a stuck encoder (a refusal ends the preflight): the pass goes on without it", async () => {
    const spool = Spool.start(["sh", "-c", "sleep 60"], Number.POSITIVE_INFINITY, dir) as Spool;
    const image = await openImage(raw);
    const t0 = performance.now();
    const pass = scanImage(image, { tap: (c, pos) => spool.feed(c, pos) });
    await Bun.sleep(300);
    spool.remove();
    const scan = await pass;
    expect(scan.rawSize).toBe(9.5 * MiB);
    expect(performance.now() - t0).toBeLessThan(10_000);
    expect(await spool.end(scan.rawSize)).toBeUndefined();
    expect(spool.problem).toBe("removed");
  }, 60_000);

  test("follow(): a reader that starts before the pass gets every byte of the file, in order, and ends after end()", async () => {
    const enc = (await encoderFor("lzo"))!;
    const spool = Spool.start(enc, Number.POSITIVE_INFINITY, dir) as Spool;
    const got: Buffer[] = [];
    let endedAt = -1;
    let fed = 0;
    const reader = (async () => {
      for await (const b of spool.follow()) got.push(b);
      endedAt = fed;
    })();
    const image = await openImage(`${raw}.xz`);
    // A slow pass: the reader catches up and waits for more several times.
    const scan = await scanImage(image, { tap: (c, pos) => ((fed = pos + c.length), spool.feed(c, pos) ?? Bun.sleep(5)) });
    await Bun.sleep(50);
    expect(endedAt).toBe(-1);
    const made = await spool.end(scan.rawSize);
    await reader;
    expect(endedAt).toBe(scan.rawSize);
    expect(got.length).toBeGreaterThan(1);
    const all = Buffer.concat(got);
    expect(all.length).toBe(made!.bytes);
    expect(new Bun.CryptoHasher("md5").update(all).digest("hex")).toBe(made!.md5);
    spool.remove();
  }, 60_000);

  test("follow(): the reader fails when the spool gives up, is removed, or its signal aborts (a send stopped mid-way)", async () => {
    const enc = (await encoderFor("lzo"))!;
    // Settled at once (a rejection before the expect would be an unhandled one): the error, or the byte count.
    const drain = async (it: AsyncIterable<Buffer>) => {
      let n = 0;
      try {
        for await (const b of it) n += b.length;
      } catch (e) {
        return e as Error;
      }
      return n;
    };
    // Gives up (outgrows its bound) while the reader waits.
    const small = Spool.start(enc, 64 << 10, dir) as Spool;
    const r1 = drain(small.follow());
    const image = await openImage(raw);
    const s1 = await scanImage(image, { tap: (c, pos) => small.feed(c, pos) });
    expect(await small.end(s1.rawSize)).toBeUndefined();
    expect(String(await r1)).toMatch(/stopped: the copy outgrew/);
    small.remove();
    // Aborted while it waits for bytes that never come (nothing is fed).
    const idle = Spool.start(enc, Number.POSITIVE_INFINITY, dir) as Spool;
    const stop = new AbortController();
    const r2 = drain(idle.follow(stop.signal));
    await Bun.sleep(100);
    stop.abort();
    expect(String(await r2)).toContain("send was stopped");
    // Removed while it waits.
    const r3 = drain(idle.follow());
    await Bun.sleep(100);
    idle.remove();
    expect(String(await r3)).toContain("stopped: removed");
  }, 60_000);

  test("no room on this side's disk: not started", () => {
    expect(Spool.start(["true"], Number.POSITIVE_INFINITY, "/no/such/dir")).toContain("free space");
  });
});

describe("estimateTransports with a copy made during the pass", () => {
  const rates: Rates = {
    link: 16e6,
    boardWrite: { "as-is": 25e6, gzip: 60e6, lzo: 170e6, raw: 200e6 },
    boardCheck: { "as-is": 20e6, gzip: 70e6, lzo: 70e6, raw: 70e6 },
    hostDecode: 120e6,
    // This side is slow at lzop (a busy laptop): without the copy, gzip wins.
    hostEncode: { gzip: 40e6, lzo: 10e6 },
    ratio: { gzip: 0.5, lzo: 0.6 },
    cpus: 1,
  };
  const input = { mode: "ramfs" as const, format: "xz" as const, fileSize: 150e6, rawSize: 1024e6, packedBytes: 300e6, shmRoom: 800e6 };
  test("lzo costs this side nothing more and its size is exact: picked; without it, not", () => {
    expect(pickTransport(estimateTransports(input, rates), rates).transport).not.toBe("lzo");
    const est = estimateTransports({ ...input, spooled: { transport: "lzo", bytes: 190e6 } }, rates);
    const lzo = est.find((e) => e.transport === "lzo")!;
    expect(lzo.wireBytes).toBe(190e6);
    expect(lzo.seconds).toBeCloseTo(190e6 / 16e6 + 1024e6 / 70e6 + 300e6 / 170e6, 5);
    expect(pickTransport(est, rates).transport).toBe("lzo");
  });
});
