import { consola } from "consola";
import { randomBytes } from "node:crypto";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import zlib from "node:zlib";
import { encoderFor, spawnFilter } from "../image/filter.ts";
import { formatBytes, type ImageFormat } from "../image/source.ts";
import type { RemoteProcess, Target } from "../target/types.ts";
import { collector } from "../util/gc.ts";
import { dropDir, startBusyboxDir } from "./dir-guard.ts";
import type { BoardCodec } from "./plan.ts";

/**
 * How the image travels to the board (issue 5, "transport chosen by measurement"):
 * - as-is: the file's own bytes, decompressed on the board (xz, gz, bz2, or a raw .img);
 * - gzip:  decompressed on this side and re-encoded as gzip -1, which the board's busybox decodes
 *          at a fraction of xz's cost;
 * - lzo:   decompressed on this side and re-encoded as lzop -1 (the busybox flash-live carries for
 *          this machine): about gzip's bytes, and the cheapest of all for the board to decode;
 * - xz:    decompressed on this side and re-encoded as xz -1 (this side's xz, all its cores): about
 *          the bytes of a .xz, but without the zero blocks the board would otherwise decode (packing);
 * - raw:   decompressed on this side, raw bytes on the wire, nothing to decode on the board.
 * With `auto`, a few seconds of measurement in the preflight (the link into the board, the board's
 * busybox on a sample of the image in each form, this side's re-encoding) predict each plan's time,
 * and the fastest wins; among plans within TIE of the fastest, the one with the fewest bytes on the wire.
 */
export type TransportName = "as-is" | "gzip" | "lzo" | "xz" | "raw";
export const TRANSPORTS: readonly TransportName[] = ["as-is", "gzip", "lzo", "xz", "raw"];
/** Plans predicted within this fraction of the fastest count as equally fast (the model is not finer). */
export const TIE = 0.1;
export type TransportSetting = "auto" | TransportName;

export function boardCodecOf(format: ImageFormat, transport: TransportName): BoardCodec | undefined {
  if (transport === "raw") return "raw";
  if (transport === "gzip") return "gz";
  if (transport === "xz") return "xz";
  if (transport === "lzo") return "lzo";
  return ({ xz: "xz", gzip: "gz", bzip2: "bz2", raw: "raw", zstd: undefined } as const)[format];
}

/** Measured rates, bytes per second. Board rates are in raw (decompressed) bytes. */
export interface Rates {
  /** Into the board over this session (SSH), for bytes that do not compress. */
  link: number;
  /** The board writing: `decoder | dd of=/dev/null`, per transport. */
  boardWrite: Partial<Record<TransportName, number>>;
  /** The board's ramfs staging check, per transport: md5 of a copy made on this side; sha256 + `decoder | md5sum` of a file sent as it is. */
  boardCheck: Partial<Record<TransportName, number>>;
  /** This side decoding the image file (raw bytes/s): what every plan but as-is starts from. */
  hostDecode: number;
  /** This side re-encoding, per transport that does (bytes/s of the raw bytes it carries). */
  hostEncode: Partial<Record<TransportName, number>>;
  /** Wire bytes per raw byte, per transport (as-is: the file's own ratio). */
  ratio: Partial<Record<TransportName, number>>;
  /** The board's CPU count: on one CPU, receiving (sshd decrypting) and decoding take turns. */
  cpus: number;
  /** Transports this side cannot make, and why (e.g. no xz here). */
  unavailable?: Partial<Record<TransportName, string>>;
}

export interface TransportEstimate {
  transport: TransportName;
  /** Predicted seconds from the first byte sent to the last byte written (verify and boot not included). */
  seconds: number;
  wireBytes: number;
  /** Bytes staged in /dev/shm in ramfs mode. */
  stagedBytes: number;
  /** Why it cannot be used here, if so. */
  excluded?: string;
}

export interface TransportInput {
  mode: "ramfs" | "stream";
  format: ImageFormat;
  fileSize: number;
  /** Raw bytes in the stream (the board decodes all of them, even with a block map). */
  rawSize: number;
  /**
   * The raw bytes a copy made on this side (gzip, raw) carries: packed, without the zero blocks and
   * a block map's unmapped ranges (src/image/pack.ts). Default rawSize.
   */
  packedBytes?: number;
  /** /dev/shm room for ramfs staging (bytes), after the margin. */
  shmRoom: number;
  /** A copy made during the image pass (src/image/spool.ts): this transport costs this side nothing more, and its size is known. */
  spooled?: { transport: TransportName; bytes: number };
}

/** The model: each plan's time from the measured rates. Pure; tested on its own. */
export function estimateTransports(input: TransportInput, rates: Rates): TransportEstimate[] {
  const out: TransportEstimate[] = [];
  for (const transport of TRANSPORTS) {
    const codec = boardCodecOf(input.format, transport);
    const ratio = transport === "raw" ? 1 : transport === "as-is" ? input.fileSize / input.rawSize : rates.ratio[transport];
    // The raw bytes the board decodes: all of them as the file is, only the packed ones otherwise.
    const carried = transport === "as-is" ? input.rawSize : input.packedBytes ?? input.rawSize;
    const spooled = input.spooled?.transport === transport ? input.spooled : undefined;
    const wireBytes = spooled ? spooled.bytes : transport === "as-is" ? input.fileSize : Math.ceil(carried * (ratio ?? 1));
    const est: TransportEstimate = { transport, seconds: Number.POSITIVE_INFINITY, wireBytes, stagedBytes: wireBytes };
    out.push(est);
    if (!codec) {
      est.excluded = `the board's busybox cannot decode ${input.format}`;
      continue;
    }
    if (transport === "raw" && input.format === "raw") {
      est.excluded = "the image is raw already (as-is)";
      continue;
    }
    if (rates.unavailable?.[transport]) {
      est.excluded = rates.unavailable[transport];
      continue;
    }
    const write = rates.boardWrite[transport];
    const check = rates.boardCheck[transport];
    // This side: decode the whole file, encode what travels (both compete for the same cores).
    const encode = transport === "raw" ? Number.POSITIVE_INFINITY : rates.hostEncode[transport];
    const hostSeconds = transport === "as-is" || spooled ? 0 : input.rawSize / rates.hostDecode + (encode ? carried / encode : 0);
    if (!write || (transport !== "as-is" && !spooled && (!encode || !rates.hostDecode || ratio === undefined)) || (input.mode === "ramfs" && !check)) {
      est.excluded = "not measured";
      continue;
    }
    if (input.mode === "ramfs" && wireBytes > input.shmRoom) {
      est.excluded = `${formatBytes(wireBytes)} does not fit in /dev/shm (${formatBytes(input.shmRoom)} room)`;
      continue;
    }
    const send = Math.max(wireBytes / rates.link, hostSeconds);
    const decode = carried / write;
    if (input.mode === "ramfs") {
      // Copy, check the copy (a hash; a file sent as it is also one decode), then decode it onto the disk.
      est.seconds = send + input.rawSize / check! + decode;
    } else {
      // Everything flows at once; on one CPU the board's share (decrypt + decode) adds up.
      est.seconds = rates.cpus > 1 ? Math.max(send, decode) : Math.max(hostSeconds, wireBytes / rates.link + decode);
    }
  }
  return out;
}

/**
 * The fastest usable estimate, and one line saying why (for the plan box and `check`). Plans within
 * TIE of the fastest are equally fast as far as the model can tell: of those, the fewest bytes on the
 * wire wins (a shared or metered link, and less to stage in RAM).
 */
export function pickTransport(estimates: TransportEstimate[], rates: Rates): { transport: TransportName; reason: string } {
  const usable = estimates.filter((e) => !e.excluded && Number.isFinite(e.seconds)).sort((a, b) => a.seconds - b.seconds);
  const fastest = usable[0];
  if (!fastest) return { transport: "as-is", reason: "no transport could be measured; the file is sent as it is" };
  const best = usable.filter((e) => e.seconds <= fastest.seconds * (1 + TIE)).sort((a, b) => a.wireBytes - b.wireBytes || a.seconds - b.seconds)[0]!;
  const mibs = (r: number | undefined) => (r ? `${(r / 1048576).toFixed(1)} MiB/s` : "?");
  const others = estimates
    .filter((e) => e !== best)
    .map((e) => `${e.transport} ${e.excluded ? `(${e.excluded})` : `~${Math.round(e.seconds)} s`}`)
    .join(", ");
  const why = best === fastest ? "fastest by measurement" : `as fast as ${fastest.transport} by measurement (within ${TIE * 100} %) with fewer bytes on the wire (${formatBytes(best.wireBytes)}, not ${formatBytes(fastest.wireBytes)})`;
  return {
    transport: best.transport,
    reason: `${why}: ~${Math.round(best.seconds)} s to write (${others}); link ${mibs(rates.link)}, board writes ${TRANSPORTS
      .filter((t) => rates.boardWrite[t])
      .map((t) => `${t} ${mibs(rates.boardWrite[t])}`)
      .join(", ")} (raw bytes out)`,
  };
}

/** Raw sample of the image, collected during the scan (a few slices spread over it). */
export interface ImageSample {
  bytes: Uint8Array;
  /** The image file's bytes per raw byte. */
  fileRatio: number;
  /** This side's decode rate of the image file (raw bytes/s), from the scan. */
  hostDecodeRate: number;
}

/** A temporary /dev/shm directory on the board with the staged busybox, for the measurement. */
export interface LinkProbe {
  dir: string;
  /** Removes the dir when its stdin ends (dropProbe, or the connection lost). */
  guard: RemoteProcess;
}

/** A guarded /dev/shm directory with the staged busybox (measureRates works in it). Remove it with dropProbe(). */
export async function startProbe(target: Target, arch: string): Promise<LinkProbe> {
  const dir = `/dev/shm/flash-live-probe-${randomBytes(4).toString("hex")}`;
  return { dir, guard: await startBusyboxDir(target, dir, arch, { root: false }) };
}

export async function dropProbe(probe: LinkProbe): Promise<void> {
  await dropDir(probe.guard).catch(() => {});
}

/**
 * Receives the samples: each file exactly its length from stdin (the staged busybox's dd), then
 * the rest of stdin (the link's filler) into /dev/null. Arguments: DIR, then NAME LENGTH pairs.
 */
export const RECEIVE_SAMPLES_SCRIPT = [
  'cd -- "$1" || exit 1',
  "shift",
  "while [ $# -gt 0 ]; do",
  '  ./busybox dd of="$1" bs=65536 count="$2" iflag=count_bytes,fullblock 2>/dev/null || exit 1',
  "  shift 2",
  "done",
  "./busybox dd of=/dev/null bs=65536 2>/dev/null",
].join("\n");

/**
 * The measurement, in the probe's directory: the sample in each form goes to the board's /dev/shm
 * in one stream that also times the link (the samples first, then filler for the rest of the
 * link's time budget: measureLink), the board's busybox times each form's write pipeline (and, for
 * ramfs, the copy's check), and this side times its own encoders. One command on the board, a few
 * seconds; nothing outside the probe's directory is touched (the caller removes it).
 */
export async function measureRates(target: Target, probe: LinkProbe, cpus: number, format: ImageFormat, sample: ImageSample, mode: "ramfs" | "stream"): Promise<Rates> {
  // A copy made on this side carries no zero blocks (packing): gzip and raw are timed and their
  // ratio taken on the sample's non-zero slices; the file as it is decodes all of it.
  const full = sample.bytes;
  const raw = nonZeroSlices(full);
  const start = performance.now();
  const trace = (what: string) => consola.debug(`measurement +${((performance.now() - start) / 1000).toFixed(1)} s: ${what}`);
  const t0 = performance.now();
  const gz = zlib.gzipSync(raw, { level: 1 });
  const gzipSeconds = (performance.now() - t0) / 1000;
  const rates: Rates = { link: 0, boardWrite: {}, boardCheck: {}, hostDecode: sample.hostDecodeRate, hostEncode: { gzip: raw.length / Math.max(gzipSeconds, 0.001) }, ratio: { gzip: gz.length / raw.length, raw: 1 }, cpus, unavailable: {} };
  // The other encoders are programs: timed on the sample, start-up included (a few ms).
  const encoded: Partial<Record<"lzo" | "xz", Uint8Array>> = {};
  for (const t of ["lzo", "xz"] as const) {
    const cmd = await encoderFor(t).catch(() => undefined);
    const t1 = performance.now();
    const out = cmd ? await runEncoder(cmd, raw) : undefined;
    if (!out) {
      rates.unavailable![t] = t === "xz" ? "xz is not installed here: apt-get install xz-utils" : "this side's busybox lzop did not run";
      continue;
    }
    rates.hostEncode[t] = raw.length / Math.max((performance.now() - t1) / 1000, 0.001);
    rates.ratio[t] = out.length / raw.length;
    encoded[t] = out;
  }
  const asIs = format === "xz" ? await runEncoder(["xz", "-1", "-T1", "-c"], full) : format === "gzip" ? zlib.gzipSync(full, { level: 6 }) : format === "raw" ? full : undefined;
  const samples: [string, Uint8Array][] = [["raw", raw], ["gzip", gz], ...(Object.entries(encoded) as [string, Uint8Array][])];
  if (asIs && format !== "raw") samples.push(["as-is", asIs]);
  trace(`samples encoded here (${samples.map(([n, b]) => `${n} ${b.length}`).join(", ")})`);
  const received = await measureLink(target, `${probe.dir}/busybox`, randomBytes(2 << 20), {
    files: samples.map(([name, bytes]) => ({ name: `s.${name}`, bytes })),
    dir: probe.dir,
  });
  rates.link = received.rate;
  trace(`link ${(received.rate / 1048576).toFixed(1)} MiB/s`);
  const dec: Partial<Record<TransportName, string>> = { raw: "cat s.raw", gzip: "./busybox zcat < s.gzip" };
  if (encoded.xz) dec.xz = "./busybox xzcat < s.xz";
  if (encoded.lzo) dec.lzo = "./busybox lzop -dc < s.lzo";
  if (asIs) dec["as-is"] = format === "raw" ? "cat s.raw" : `./busybox ${format === "xz" ? "xzcat" : "zcat"} < s.as-is`;
  const lines = ['cd "$1" || exit 1', 't() { read -r u _ < /proc/uptime; echo "$1 $u"; }'];
  for (const [name, d] of Object.entries(dec)) {
    const file = name === "as-is" && format !== "raw" ? "s.as-is" : `s.${name === "as-is" ? "raw" : name}`;
    lines.push(`t w-${name}`, `${d.replace(/^cat /, "./busybox cat ")} | ./busybox dd of=/dev/null bs=4M 2>/dev/null`, `t w-${name}-end`);
    // The ramfs copy's check: a copy made on this side (raw, gzip) is only hashed on the board; a
    // compressed file sent as it is is also decoded once (src/modes/flash.ts).
    const check = name === "as-is" && format !== "raw" ? `./busybox sha256sum ${file} >/dev/null; ${d} | ./busybox md5sum >/dev/null` : `./busybox md5sum ${file} >/dev/null`;
    if (mode === "ramfs") lines.push(`t c-${name}`, check, `t c-${name}-end`);
  }
  const r = await target.exec(["sh", "-c", lines.join("\n"), "sh", probe.dir], { check: false });
  trace("the board's decoders timed");
  const at = new Map(r.stdout.split("\n").filter(Boolean).map((l) => l.split(" ") as [string, string]).map(([k, v]) => [k, Number(v)]));
  for (const name of Object.keys(dec) as TransportName[]) {
    for (const [kind, into] of [["w", rates.boardWrite], ["c", rates.boardCheck]] as const) {
      const a = at.get(`${kind}-${name}`);
      const b = at.get(`${kind}-${name}-end`);
      // /proc/uptime ticks in 10 ms: never divide by less than one tick.
      const bytes = name === "as-is" && format !== "raw" ? full.length : raw.length;
      if (a !== undefined && b !== undefined) into[name] = bytes / Math.max(0.01, b - a);
    }
  }
  if (asIs) {
    rates.ratio["as-is"] = asIs.length / (format === "raw" ? raw.length : full.length);
    // The sample is a few MiB: correct gzip's ratio by how far the sample's own-codec ratio is
    // from the whole file's (as-is ratio known exactly).
    for (const t of ["gzip", "lzo", "xz"] as const) if (rates.ratio[t] !== undefined) rates.ratio[t] = rates.ratio[t]! * sample.fileRatio / rates.ratio["as-is"];
  }
  return rates;
}

/**
 * The link into the board: bytes (ssh does not compress) into the board's busybox dd for a few
 * seconds. A write completes when the SSH channel window takes it, so once the window is full
 * (2 MiB with OpenSSH) writes are taken exactly as fast as the board consumes: between two such
 * writes the board took what was sent.
 * - With `files`, they travel first, each into its file in `dir` (RECEIVE_SAMPLES_SCRIPT), as the
 *   warm-up, and the filler after them is what is timed: the samples cost no time of their own,
 *   and a link that compresses (the samples are image bytes) is not timed on them. The filler is
 *   random bytes.
 * - The warm-up (4 MiB, or what went in the first 0.75 s on a slow link) is left out: it fills the
 *   window and lets TCP and the board's receive window grow. Timing a short copy whole (a put of
 *   8 MiB) measured a third of what a 1 GiB stream then got on a TCG board.
 * - The answer is the best stretch of at least a second, not the average: just after a login a
 *   board is busy for a while (on a TCG board with systemd, the first login's user manager: a
 *   first measurement 3.5 MiB/s, the next ones 13-17), and the write comes later.
 */
export async function measureLink(
  target: Target,
  busybox: string,
  filler: Uint8Array,
  {
    budgetMs = 3000,
    maxBytes = 64 << 20,
    warmBytes = 4 << 20,
    warmMs = 750,
    spanMs = 1000,
    files = [],
    dir,
  }: { budgetMs?: number; maxBytes?: number; warmBytes?: number; warmMs?: number; spanMs?: number; files?: { name: string; bytes: Uint8Array }[]; dir?: string } = {},
): Promise<{ rate: number }> {
  const CHUNK = 1 << 20;
  const slices = (b: Uint8Array) => {
    const out: Uint8Array[] = [];
    for (let off = 0; off < b.length; off += CHUNK) out.push(b.subarray(off, Math.min(b.length, off + CHUNK)));
    return out;
  };
  const fill = slices(filler);
  if (!fill.length) throw new Error("no sample to measure the link with");
  const head = files.flatMap((f) => slices(f.bytes));
  const headBytes = files.reduce((n, f) => n + f.bytes.length, 0);
  const argv = files.length
    ? ["sh", "-c", RECEIVE_SAMPLES_SCRIPT, "sh", dir ?? ".", ...files.flatMap((f) => [f.name, String(f.bytes.length)])]
    : ["sh", "-c", 'exec "$1" dd of=/dev/null bs=65536 2>/dev/null', "sh", busybox];
  const p = await target.spawn(argv, {});
  p.stdout.resume();
  p.stderr.resume();
  let exited = false;
  const done = p.exited.then((c) => ((exited = true), c));
  const write = (b: Uint8Array) =>
    new Promise<void>((resolve, reject) => {
      // A write the channel never takes (the command died): the exit settles it.
      void done.then(() => reject(new Error("the board's dd ended before the link was measured")));
      p.stdin.write(b, (e) => (e ? reject(e) : resolve()));
    });
  const collect = collector(16 << 20);
  const t0 = performance.now();
  let sent = 0;
  /** (time, bytes sent) after each write once warm. */
  const points: { t: number; sent: number }[] = [];
  try {
    for (let i = 0; (i < head.length || sent < maxBytes) && !exited; i++) {
      const c = i < head.length ? head[i]! : fill[(i - head.length) % fill.length]!;
      await write(c);
      sent += c.length;
      collect(c.length); // each MiB is ~32 encrypted SSH packets of garbage (src/util/gc.ts)
      const now = performance.now();
      // After samples, the timing starts once a window of filler went in: until then the board may
      // still be taking sample bytes.
      const timed = !head.length || sent - headBytes >= 2 << 20;
      if (timed && (points.length || sent >= warmBytes || now - t0 >= warmMs)) points.push({ t: now, sent });
      if (points.length > 2 && now - t0 >= budgetMs && now - points[0]!.t >= spanMs) break;
    }
  } catch (e) {
    p.kill();
    throw e;
  }
  p.stdin.end();
  const code = await done;
  if (code !== 0) throw new Error(`the board's dd exited ${code} while the link was measured`);
  const first = points[0];
  const last = points.at(-1);
  if (!first || !last || last.sent === first.sent) throw new Error("the link measurement ended before its warm-up");
  let best = (last.sent - first.sent) / ((last.t - first.t) / 1000);
  for (let i = 0; i < points.length; i++) {
    for (let j = i + 1; j < points.length; j++) {
      const dt = points[j]!.t - points[i]!.t;
      if (dt >= spanMs) best = Math.max(best, (points[j]!.sent - points[i]!.sent) / (dt / 1000));
    }
  }
  return { rate: best };
}

/** The sample's 1 MiB slices that are not all zero (the whole sample if they are less than 1 MiB). */
export function nonZeroSlices(sample: Uint8Array): Uint8Array {
  const SLICE = 1 << 20;
  const zero = new Uint8Array(SLICE);
  const keep: Uint8Array[] = [];
  let bytes = 0;
  for (let off = 0; off < sample.length; off += SLICE) {
    const s = sample.subarray(off, Math.min(sample.length, off + SLICE));
    if (Buffer.compare(s, zero.subarray(0, s.length)) !== 0) {
      keep.push(s);
      bytes += s.length;
    }
  }
  return bytes >= SLICE ? Buffer.concat(keep) : sample;
}

/** Bytes through an encoder on this side (the xz as-is sample at level 1: the board's decode speed hardly depends on the level); undefined when it fails. */
async function runEncoder(cmd: readonly string[], raw: Uint8Array): Promise<Uint8Array | undefined> {
  const out: Buffer[] = [];
  const sink = new Writable({
    write(c: Buffer, _e, cb) {
      out.push(c);
      cb();
    },
  });
  return pipeline(Readable.from([raw]), spawnFilter(cmd), sink).then(
    () => Buffer.concat(out),
    () => undefined,
  );
}
