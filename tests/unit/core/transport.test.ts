/**
 * The transport model (issue 5): from measured rates to each plan's predicted time, and the pick.
 * The rates below are the ones measured on this project's boards (a 1-vCPU TCG board: link ~7 MiB/s,
 * busybox xzcat ~17 MiB/s) and on a fast board with a slow link, where the answers must differ.
 */
import { describe, expect, test } from "bun:test";
import { estimateTransports, pickTransport, type Rates, type TransportInput } from "../../../src/core/transport.ts";
import { planFlash } from "../../../src/core/plan.ts";

const MiB = 1 << 20;
const l2: TransportInput = { mode: "stream", format: "xz", fileSize: 65.4 * MiB, rawSize: 320 * MiB, shmRoom: 800 * MiB };

const tcgBoard: Rates = {
  link: 7 * MiB,
  boardWrite: { "as-is": 17 * MiB, gzip: 30 * MiB, raw: 400 * MiB },
  boardCheck: { "as-is": 14 * MiB, gzip: 22 * MiB, raw: 30 * MiB },
  host: { gzip: 90 * MiB, raw: 300 * MiB },
  ratio: { "as-is": 0.2, gzip: 0.27, raw: 1 },
  cpus: 1,
};

describe("estimateTransports", () => {
  test("one CPU, stream: receiving and decoding add up; each plan's seconds follow from the rates", () => {
    const e = Object.fromEntries(estimateTransports(l2, tcgBoard).map((x) => [x.transport, x]));
    expect(e["as-is"]!.seconds).toBeCloseTo(65.4 / 7 + 320 / 17, 5);
    expect(e.gzip!.wireBytes).toBe(Math.ceil(320 * MiB * 0.27));
    expect(e.gzip!.seconds).toBeCloseTo(Math.max(320 / 90, (320 * 0.27) / 7 + 320 / 30), 3);
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

  test("zstd cannot be sent as is; a raw image has no separate raw plan; unmeasured plans are excluded", () => {
    const z = estimateTransports({ ...l2, format: "zstd", fileSize: 70 * MiB }, tcgBoard);
    expect(z.find((x) => x.transport === "as-is")!.excluded).toContain("cannot decode zstd");
    const r = estimateTransports({ ...l2, format: "raw", fileSize: 320 * MiB }, tcgBoard);
    expect(r.find((x) => x.transport === "raw")!.excluded).toContain("raw already");
    const partial = estimateTransports(l2, { ...tcgBoard, boardWrite: { "as-is": 17 * MiB } });
    expect(partial.filter((x) => x.excluded === "not measured").map((x) => x.transport)).toEqual(["gzip", "raw"]);
  });
});

describe("pickTransport", () => {
  test("a slow board CPU and a middling link: gzip -1 (cheap to decode) beats xz; the reason names the numbers", () => {
    const fastLink = { ...tcgBoard, link: 15 * MiB };
    const pick = pickTransport(estimateTransports(l2, fastLink), fastLink);
    expect(pick.transport).toBe("gzip");
    expect(pick.reason).toMatch(/^fastest by measurement: ~\d+ s to write \(as-is ~\d+ s, raw ~\d+ s\); link 15\.0 MiB\/s/);
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
    const gz = planFlash({ facts, image, local: false, mode: "auto", servicePatterns: [], transport: "gzip", gzipRatio: 0.25 });
    expect(gz).toMatchObject({ codec: "gz", transcode: true, transportReason: "asked for (--transport)", stagedBytes: Math.ceil(320 * MiB * 0.25 * 1.1) });
  });

  test("as-is for zstd turns into gzip -1 (the board cannot decode zstd), raw for a raw image is as-is", () => {
    const z = planFlash({ facts, image: { ...image, format: "zstd" }, local: false, mode: "auto", servicePatterns: [], transport: "as-is" });
    expect(z).toMatchObject({ codec: "gz", transport: "gzip" });
    const r = planFlash({ facts, image: { ...image, format: "raw", fileSize: 320 * MiB }, local: false, mode: "auto", servicePatterns: [], transport: "raw" });
    expect(r).toMatchObject({ codec: "raw", transport: "as-is", transcode: false });
  });
});
