/**
 * The transport model (issue 5): from measured rates to each plan's predicted time, and the pick.
 * The rates below are the ones measured on this project's boards (a 1-vCPU TCG board: link ~7 MiB/s,
 * busybox xzcat ~17 MiB/s) and on a fast board with a slow link, where the answers must differ.
 */
import { describe, expect, test } from "bun:test";
import { Readable, Writable } from "node:stream";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { busyboxFor } from "../../../src/assets/busybox.ts";
import { estimateTransports, measureLink, pickTransport, RECEIVE_SAMPLES_SCRIPT, type Rates, type TransportInput } from "../../../src/core/transport.ts";
import type { Target } from "../../../src/target/types.ts";
import { planFlash } from "../../../src/core/plan.ts";

const MiB = 1 << 20;
const l2: TransportInput = { mode: "stream", format: "xz", fileSize: 65.4 * MiB, rawSize: 320 * MiB, shmRoom: 800 * MiB };

const tcgBoard: Rates = {
  link: 7 * MiB,
  boardWrite: { "as-is": 17 * MiB, gzip: 30 * MiB, raw: 400 * MiB },
  boardCheck: { "as-is": 14 * MiB, gzip: 22 * MiB, raw: 30 * MiB },
  hostDecode: 300 * MiB,
  hostEncode: { gzip: 128 * MiB },
  ratio: { "as-is": 0.2, gzip: 0.27, raw: 1 },
  cpus: 1,
};

describe("estimateTransports", () => {
  test("one CPU, stream: receiving and decoding add up; each plan's seconds follow from the rates", () => {
    const e = Object.fromEntries(estimateTransports(l2, tcgBoard).map((x) => [x.transport, x]));
    expect(e["as-is"]!.seconds).toBeCloseTo(65.4 / 7 + 320 / 17, 5);
    expect(e.gzip!.wireBytes).toBe(Math.ceil(320 * MiB * 0.27));
    expect(e.gzip!.seconds).toBeCloseTo(Math.max(320 / 300 + 320 / 128, (320 * 0.27) / 7 + 320 / 30), 3);
    expect(e.raw!.seconds).toBeCloseTo(320 / 7 + 320 / 400, 5);
  });

  test("several CPUs, stream: the slowest stage sets the pace", () => {
    const e = Object.fromEntries(estimateTransports(l2, { ...tcgBoard, cpus: 4 }).map((x) => [x.transport, x]));
    expect(e["as-is"]!.seconds).toBeCloseTo(Math.max(65.4 / 7, 320 / 17), 5);
  });

  test("ramfs: copy, check, write in turn; a plan whose copy does not fit in /dev/shm is excluded", () => {
    const e = Object.fromEntries(estimateTransports({ ...l2, mode: "ramfs", shmRoom: 200 * MiB }, tcgBoard).map((x) => [x.transport, x]));
    expect(e["as-is"]!.seconds).toBeCloseTo(65.4 / 7 + 320 / 14 + 320 / 17, 5);
    expect(e.raw!.excluded).toContain("does not fit in /dev/shm");
    expect(e.gzip!.excluded).toBeUndefined();
  });

  test("packed: gzip and raw carry only the image's non-zero data; the file as it is still decodes all of it", () => {
    const packed = { ...l2, packedBytes: 96 * MiB };
    const e = Object.fromEntries(estimateTransports(packed, tcgBoard).map((x) => [x.transport, x]));
    expect(e["as-is"]!.seconds).toBeCloseTo(65.4 / 7 + 320 / 17, 5);
    expect(e.raw!.wireBytes).toBe(96 * MiB);
    expect(e.raw!.seconds).toBeCloseTo(Math.max(320 / 300, 96 / 7 + 96 / 400), 5);
    expect(e.gzip!.wireBytes).toBe(Math.ceil(96 * MiB * 0.27));
    // This side decodes all of the file, and encodes only what travels.
    expect(e.gzip!.seconds).toBeCloseTo(Math.max(320 / 300 + 96 / 128, (96 * 0.27) / 7 + 96 / 30), 3);
    // On the TCG board's numbers: gzip of the data alone ~7 s, raw ~14 s, the file as it is ~28 s.
    expect(pickTransport(estimateTransports(packed, tcgBoard), tcgBoard).transport).toBe("gzip");
  });

  test("zstd cannot be sent as is; a raw image has no separate raw plan; unmeasured plans are excluded", () => {
    const z = estimateTransports({ ...l2, format: "zstd", fileSize: 70 * MiB }, tcgBoard);
    expect(z.find((x) => x.transport === "as-is")!.excluded).toContain("cannot decode zstd");
    const r = estimateTransports({ ...l2, format: "raw", fileSize: 320 * MiB }, tcgBoard);
    expect(r.find((x) => x.transport === "raw")!.excluded).toContain("raw already");
    const partial = estimateTransports(l2, { ...tcgBoard, boardWrite: { "as-is": 17 * MiB } });
    expect(partial.filter((x) => x.excluded === "not measured").map((x) => x.transport)).toEqual(["gzip", "lzo", "xz", "raw"]);
  });

  test("xz -1 and lzop -1 made here: the packed data at its measured ratio, decoded by the board's busybox; excluded when this side cannot encode", () => {
    const withXz: Rates = {
      ...tcgBoard,
      boardWrite: { ...tcgBoard.boardWrite, xz: 20 * MiB, lzo: 180 * MiB },
      hostEncode: { ...tcgBoard.hostEncode, xz: 9 * MiB, lzo: 150 * MiB },
      ratio: { ...tcgBoard.ratio, xz: 0.18, lzo: 0.3 },
    };
    const packed = { ...l2, packedBytes: 96 * MiB };
    const e = Object.fromEntries(estimateTransports(packed, withXz).map((x) => [x.transport, x]));
    expect(e.xz!.wireBytes).toBe(Math.ceil(96 * MiB * 0.18));
    // One CPU: this side (decode 320 MiB, encode 96 MiB) against the board's share (receive, decode).
    expect(e.xz!.seconds).toBeCloseTo(Math.max(320 / 300 + 96 / 9, (96 * 0.18) / 7 + 96 / 20), 3);
    expect(e.lzo!.seconds).toBeCloseTo(Math.max(320 / 300 + 96 / 150, (96 * 0.3) / 7 + 96 / 180), 3);
    // gzip ~7.4 s, lzo ~4.7 s (cheap to decode), xz ~11.5 s (this side's encoder is the slow part).
    expect(pickTransport(estimateTransports(packed, withXz), withXz).transport).toBe("lzo");
    const none = estimateTransports(packed, { ...withXz, unavailable: { xz: "xz is not installed here: apt-get install xz-utils" } });
    expect(none.find((x) => x.transport === "xz")!.excluded).toBe("xz is not installed here: apt-get install xz-utils");
  });
});

describe("pickTransport", () => {
  test("a slow board CPU and a middling link: gzip -1 (cheap to decode) beats xz; the reason names the numbers", () => {
    const fastLink = { ...tcgBoard, link: 15 * MiB };
    const pick = pickTransport(estimateTransports(l2, fastLink), fastLink);
    expect(pick.transport).toBe("gzip");
    expect(pick.reason).toMatch(/^fastest by measurement: ~\d+ s to write \(as-is ~\d+ s, lzo \(not measured\), xz \(not measured\), raw ~\d+ s\); link 15\.0 MiB\/s/);
  });

  test("plans within 10 % of the fastest are a tie: the fewest bytes on the wire wins, and the reason says so", () => {
    // Stream on one CPU, B-like: 1024 MiB raw, 297 MiB packed; raw ~24 s, xz ~25 s, gzip slower.
    const b = { mode: "stream" as const, format: "xz" as const, fileSize: 152 * MiB, rawSize: 1024 * MiB, packedBytes: 297 * MiB, shmRoom: 800 * MiB };
    const rates: Rates = {
      link: 13 * MiB,
      boardWrite: { "as-is": 23 * MiB, gzip: 14 * MiB, xz: 23 * MiB, raw: 300 * MiB },
      boardCheck: {},
      hostDecode: 130 * MiB,
      hostEncode: { gzip: 100 * MiB, xz: 80 * MiB },
      ratio: { "as-is": 0.15, gzip: 0.62, xz: 0.5, raw: 1 },
      cpus: 1,
    };
    const est = estimateTransports(b, rates);
    const e = Object.fromEntries(est.map((x) => [x.transport, x]));
    expect(e.xz!.seconds).toBeGreaterThan(e.raw!.seconds);
    expect(e.xz!.seconds).toBeLessThanOrEqual(e.raw!.seconds * 1.1);
    const pick = pickTransport(est, rates);
    expect(pick.transport).toBe("xz");
    expect(pick.reason).toMatch(/^as fast as raw by measurement \(within 10 %\) with fewer bytes on the wire \(149 MiB, not 297 MiB\): ~\d+ s to write/);
    // Beyond the tie, speed wins again.
    const slowXz = { ...rates, boardWrite: { ...rates.boardWrite, xz: 15 * MiB } };
    expect(pickTransport(estimateTransports(b, slowXz), slowXz).transport).toBe("raw");
  });

  test("a very fast link and disk-speed writes: raw", () => {
    const lan = { ...tcgBoard, link: 110 * MiB, cpus: 4, boardWrite: { ...tcgBoard.boardWrite, raw: 300 * MiB } };
    expect(pickTransport(estimateTransports(l2, lan), lan).transport).toBe("raw");
  });

  test("a slow link (Wi-Fi, 2 MiB/s) and a fast board: the smallest bytes, the file as is", () => {
    const wifi: Rates = { ...tcgBoard, link: 2 * MiB, cpus: 4, boardWrite: { "as-is": 60 * MiB, gzip: 150 * MiB, raw: 300 * MiB } };
    expect(pickTransport(estimateTransports(l2, wifi), wifi).transport).toBe("as-is");
  });

  test("nothing measured: the file as is, and says so", () => {
    const none: Rates = { ...tcgBoard, boardWrite: {} };
    expect(pickTransport(estimateTransports(l2, none), none)).toEqual({ transport: "as-is", reason: "no transport could be measured; the file is sent as it is" });
  });
});

describe("the plan follows the transport", () => {
  const facts = {
    uid: 0, user: "root", sudo: "root", arch: "aarch64", cpus: 4, kernel: "6.6", hostname: "pi", bootId: "b", cmdline: "", memTotal: 4 << 30, memAvailable: 3 << 30,
    shmAvail: 2 << 30, shmFsType: "tmpfs", mounts: [], blocks: [], swaps: [], tools: [], init: "systemd", units: [],
    root: { mount: { majmin: "179:2", mountPoint: "/", fstype: "ext4", source: "/dev/mmcblk0p2" }, disk: { name: "mmcblk0", majmin: "179:0", sizeBytes: 32 << 30, kind: "disk", readOnly: false, removable: false } },
    diskPartitions: [], diskMounts: [],
  } as never;
  const image = { path: "/i/x.img.xz", format: "xz" as const, fileSize: 65 * MiB, rawSize: 320 * MiB };

  test("raw: the board decodes nothing and the ramfs copy is the raw size; gzip: the measured ratio sizes the copy", () => {
    const raw = planFlash({ facts, image, local: false, mode: "auto", servicePatterns: [], transport: "raw", transportReason: "r" });
    expect(raw).toMatchObject({ codec: "raw", transcode: true, transport: "raw", transportReason: "r", stagedBytes: 320 * MiB });
    const gz = planFlash({ facts, image, local: false, mode: "auto", servicePatterns: [], transport: "gzip", encodedRatio: 0.25 });
    expect(gz).toMatchObject({ codec: "gz", transcode: true, transportReason: "asked for (--transport)", stagedBytes: Math.ceil(320 * MiB * 0.25 * 1.1) });
  });

  test("packed: the ramfs copy of raw (or of a raw image as is) and gzip is sized by the bytes it carries", () => {
    const raw = planFlash({ facts, image, local: false, mode: "auto", servicePatterns: [], transport: "raw", packedBytes: 100 * MiB });
    expect(raw.stagedBytes).toBe(100 * MiB);
    const gz = planFlash({ facts, image, local: false, mode: "auto", servicePatterns: [], transport: "gzip", encodedRatio: 0.25, packedBytes: 100 * MiB });
    expect(gz.stagedBytes).toBe(Math.ceil(100 * MiB * 0.25 * 1.1));
    const asIs = planFlash({ facts, image: { ...image, format: "raw", fileSize: 320 * MiB }, local: false, mode: "auto", servicePatterns: [], packedBytes: 100 * MiB });
    expect(asIs.stagedBytes).toBe(100 * MiB);
    const xz = planFlash({ facts, image, local: false, mode: "auto", servicePatterns: [], packedBytes: 100 * MiB });
    expect(xz.stagedBytes).toBe(65 * MiB);
  });

  test("as-is for zstd turns into gzip -1 (the board cannot decode zstd), raw for a raw image is as-is", () => {
    const z = planFlash({ facts, image: { ...image, format: "zstd" }, local: false, mode: "auto", servicePatterns: [], transport: "as-is" });
    expect(z).toMatchObject({ codec: "gz", transport: "gzip" });
    const r = planFlash({ facts, image: { ...image, format: "raw", fileSize: 320 * MiB }, local: false, mode: "auto", servicePatterns: [], transport: "raw" });
    expect(r).toMatchObject({ codec: "raw", transport: "as-is", transcode: false });
  });
});

/**
 * measureLink against a fake board whose stdin drains at a set rate behind a 2 MiB window, after a
 * slow start (what TCP and a TCG guest's receive window do): the steady rate, not the ramp.
 */
describe("measureLink", () => {
  function drainingTarget(rate: number, slowStart: { bytes: number; rate: number }, window = 2 * MiB, busy?: { ms: number; rate: number }) {
    let consumed = 0;
    let exitCode: (c: number) => void = () => {};
    const spawned: string[][] = [];
    /** Every chunk written, with the time it was taken. */
    const writes: { bytes: Uint8Array; at: number }[] = [];
    const target = {
      async spawn(argv: readonly string[]) {
        spawned.push([...argv]);
        const exited = new Promise<number | null>((r) => (exitCode = r));
        // Bytes in the window drain continuously at the rate (the slow-start rate at first).
        let queued = 0;
        let last = performance.now();
        const born = performance.now();
        const rateNow = () => (consumed < slowStart.bytes ? slowStart.rate : busy && performance.now() - born < busy.ms ? busy.rate : rate);
        const drain = () => {
          const now = performance.now();
          const d = Math.min(queued, ((now - last) / 1000) * rateNow());
          queued -= d;
          consumed += d;
          last = now;
        };
        const stdin = new Writable({
          highWaterMark: 0,
          write(chunk: Buffer, _enc, cb) {
            const take = () => {
              drain();
              if (queued + chunk.length <= window) {
                queued += chunk.length;
                writes.push({ bytes: chunk, at: performance.now() });
                cb();
              } else setTimeout(take, Math.max(1, ((queued + chunk.length - window) / rateNow()) * 1000));
            };
            take();
          },
          final(cb) {
            cb();
            const fin = () => {
              drain();
              if (queued < 1) exitCode(0);
              else setTimeout(fin, Math.max(1, (queued / rateNow()) * 1000));
            };
            fin();
          },
        });
        return { stdin, stdout: Readable.from([]), stderr: Readable.from([]), exited, kill() {} };
      },
    } as unknown as Target;
    return { target, spawned, writes };
  }

  test("a 40 MiB/s link after a 2 MiB/s start (2 MiB): ~40 MiB/s, within a few seconds, into the staged busybox's dd", async () => {
    const { target, spawned } = drainingTarget(40 * MiB, { bytes: 2 * MiB, rate: 2 * MiB });
    const t = performance.now();
    const { rate } = await measureLink(target, "/dev/shm/x/busybox", new Uint8Array(8 * MiB), { budgetMs: 1500 });
    expect(rate / MiB).toBeGreaterThan(34);
    expect(rate / MiB).toBeLessThan(46);
    expect(performance.now() - t).toBeLessThan(6000);
    expect(spawned[0]).toEqual(["sh", "-c", 'exec "$1" dd of=/dev/null bs=65536 2>/dev/null', "sh", "/dev/shm/x/busybox"]);
  });

  test("a board busy for the first 1.5 s (3 MiB/s), then 12 MiB/s: the best second counts, not the average", async () => {
    const { target } = drainingTarget(12 * MiB, { bytes: 0, rate: 12 * MiB }, 2 * MiB, { ms: 1500, rate: 3 * MiB });
    const { rate } = await measureLink(target, "bb", new Uint8Array(8 * MiB));
    expect(rate / MiB).toBeGreaterThan(10);
    expect(rate / MiB).toBeLessThan(14);
  });

  test("samples first, each into its file, then the filler: only the filler is timed (a fast start on compressible samples does not count)", async () => {
    // The samples drain at 200 MiB/s (as a compressing link would take image bytes), the filler at 10.
    const { target, spawned, writes } = drainingTarget(10 * MiB, { bytes: 6 * MiB, rate: 200 * MiB });
    const a = new Uint8Array(5 * MiB).fill(1);
    const b = new Uint8Array(MiB / 2).fill(2);
    const { rate } = await measureLink(target, "/dev/shm/p/busybox", new Uint8Array(2 * MiB).fill(3), {
      budgetMs: 1500,
      files: [{ name: "s.a", bytes: a }, { name: "s.b", bytes: b }],
      dir: "/dev/shm/p",
    });
    expect(spawned[0]).toEqual(["sh", "-c", RECEIVE_SAMPLES_SCRIPT, "sh", "/dev/shm/p", "s.a", String(5 * MiB), "s.b", String(MiB / 2)]);
    const sent = Buffer.concat(writes.map((w) => w.bytes));
    expect(sent.subarray(0, 5 * MiB).every((x) => x === 1)).toBe(true);
    expect(sent.subarray(5 * MiB, 5 * MiB + MiB / 2).every((x) => x === 2)).toBe(true);
    expect(sent.subarray(5 * MiB + MiB / 2).every((x) => x === 3)).toBe(true);
    expect(rate / MiB).toBeGreaterThan(8.5);
    expect(rate / MiB).toBeLessThan(11.5);
  });

  test("RECEIVE_SAMPLES_SCRIPT under the staged busybox: each file exactly its bytes, the rest of stdin read to the end", async () => {
    const dir = mkdtempSync(join(tmpdir(), "flash-live-samples-"));
    try {
      writeFileSync(join(dir, "busybox"), await busyboxFor("x86_64"), { mode: 0o700 });
      const a = Buffer.alloc(200_001, 7);
      const b = Buffer.from("b's bytes\n");
      const p = Bun.spawn(["sh", "-c", RECEIVE_SAMPLES_SCRIPT, "sh", dir, "s.a", String(a.length), "s.b", String(b.length)], {
        stdin: new Blob([a, b, Buffer.alloc(3 * MiB, 9)]),
        stdout: "pipe",
        stderr: "pipe",
      });
      expect(await p.exited).toBe(0);
      expect(readFileSync(join(dir, "s.a")).equals(a)).toBe(true);
      expect(readFileSync(join(dir, "s.b")).equals(b)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a slow link (1.5 MiB/s): measured after the first 0.75 s, not after 4 MiB", async () => {
    const { target } = drainingTarget(1.5 * MiB, { bytes: 0, rate: 1.5 * MiB });
    const t = performance.now();
    const { rate } = await measureLink(target, "bb", new Uint8Array(8 * MiB), { budgetMs: 1500 });
    expect(rate / MiB).toBeGreaterThan(1.3);
    expect(rate / MiB).toBeLessThan(1.7);
    expect(performance.now() - t).toBeLessThan(6000);
  });
});
