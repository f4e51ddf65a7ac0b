import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { hostname } from "node:os";
import { PassThrough, Readable, Transform } from "node:stream";
import zlib from "node:zlib";
import { consola } from "consola";
import flashScript from "../helpers/flash.sh" with { type: "text" };
import type { FlashMode } from "../config/schema.ts";
import type { FlashContext } from "../core/context.ts";
import { dropDir, keepDir, startBusyboxDir } from "../core/dir-guard.ts";
import { gatherFacts, type TargetFacts } from "../core/facts.ts";
import type { FlashHookable } from "../core/hooks.ts";
import { fitsShm, type Plan, planFlash, SHM_MARGIN } from "../core/plan.ts";
import { dropProbe, estimateTransports, type LinkProbe, measureRates, pickTransport, startProbe, type Rates, type TransportEstimate, type TransportName, type TransportSetting } from "../core/transport.ts";
import { createProgress, fmtDuration } from "../core/progress.ts";
import { faultScript, isHarness, patchDumpPath } from "../core/safety.ts";
import type { PreparedBoot } from "../core/customize-step.ts";
import { parseRecord, RECORD_FILE, recordHeadText, recordPadding } from "../core/record.ts";
import { UserError } from "../errors.ts";
import { type Bmap, findBmap, loadBmap, mergeRegions } from "../image/bmap.ts";
import { encoderFor, spawnFilter } from "../image/filter.ts";
import { layoutText, type PackLayout, packFilter, packLayout } from "../image/pack.ts";
import { type ImageScan, patchRanges, scanImage } from "../image/scan.ts";
import { Spool, type SpoolFile } from "../image/spool.ts";
import { formatBytes, type ImageFormat, type ImageInfo, openImage, rawStream } from "../image/source.ts";
import { AuthError, HostKeyError, NoAnswerError } from "../target/ssh.ts";
import type { RemoteProcess, Target } from "../target/types.ts";
import { collector } from "../util/gc.ts";

export interface FlashOptions {
  target: Target;
  /** The image on the sending side (remote) or on the board (local). */
  imagePath: string;
  local: boolean;
  mode: FlashMode;
  hooks: FlashHookable;
  /** Service patterns from config; plugins extend them in services:resolve. */
  services: string[];
  /** Skip the typed confirmation (scripts). */
  yes: boolean;
  interactive: boolean;
  verify: boolean;
  /** Use a block map: the one next to the image (default true), or bmapFile. */
  bmap?: boolean;
  bmapFile?: string;
  /** What to do when read-back verification fails even after a repair: reboot (default) or halt. */
  onVerifyFail?: "reboot" | "halt";
  /** Leave the flash record (flash-live.txt) on the new boot partition. */
  record?: boolean;
  /** How the image travels (remote): measured (auto, the default) or as asked. */
  transport?: TransportSetting;
  /** flash-live's version, for the record. */
  version?: string;
  /**
   * Builds the boot partition edit (the customization, the record's placeholder) once the image head
   * and the facts are known; undefined: the image alone is written.
   */
  prepareBoot?: (ctx: FlashContext, image: ImageInfo, record: { flashId: string } | undefined) => Promise<PreparedBoot | undefined>;
  /** Log in to the board again after the reboot; `user` overrides the login user; `limits`: of this one attempt. */
  reconnect?: Reconnect;
  /** The user the customization creates (user=): after the reboot it may be the only way in. */
  newUser?: string;
  /** Confirmation prompt (tests inject one). */
  confirm?: (question: string, phrase: string) => Promise<boolean>;
  log?: typeof consola;
}

export interface FlashResult {
  facts: TargetFacts;
  plan: Plan;
  scan: ImageScan;
  /** Image bytes written (less than scan.rawSize with a block map), not counting customization sectors. */
  written: number;
  verified: "ok" | "failed" | "repaired" | "skipped";
  /** Bytes sent to the board (copy or stream), on the wire before SSH's own framing. */
  bytesSent: number;
  rebooted: boolean;
  after?: { bootId: string; hostname: string; os?: string; user?: string };
  /** The flash record as read back from the booted board (remote), its key=value lines. */
  record?: Record<string, string>;
  timings: Record<string, number>;
  warnings: string[];
}

const PHASES = ["facts", "plan", "confirm", "stage", "handoff", "wait"] as const;
export type Phase = (typeof PHASES)[number];
type PhaseRunner = <T>(name: Phase, fn: () => Promise<T>) => Promise<T>;

export type PreflightOptions = Pick<FlashOptions, "target" | "local" | "mode" | "hooks" | "services" | "prepareBoot" | "bmap" | "bmapFile" | "record" | "transport"> & {
  imagePath?: string;
  /**
   * Called once the facts are in, while the image is still being read (flash: the helper's work dir
   * is made then, see runFlash). The measurement's probe dir is made after what it returns
   * settles: one thing at a time on the board.
   */
  onFacts?: (facts: TargetFacts) => Promise<unknown> | undefined;
  /**
   * Make the ramfs copy (lzop -1, packed) during the image pass, on this side's disk, in case the
   * measurement picks lzo (src/image/spool.ts). flash sets it; check does not (it copies nothing).
   */
  spool?: boolean;
  /**
   * Send that copy to the board while the pass still makes it (flash with --yes: confirmed ahead, so
   * the copy's transfer overlaps the image check instead of following it). Given the copy's bytes
   * as they are made; see CopySend. Only once the board alone cannot refuse the flash.
   */
  sendCopy?: (bytes: AsyncIterable<Buffer>) => CopySend;
  /**
   * Local flash: the helper's work dir on the board's tmpfs, made (with its busybox) by what onFacts
   * returns. A ramfs copy the board would re-encode (LOCAL_LZO) is then made there during the image
   * pass, by that busybox's lzop: the image is decoded once, not once to check it and again to copy
   * it, and the copy is moved into place, never copied (RAM holds it once).
   */
  copyDir?: string;
};

/** The copy on its way to the board during the image pass (runFlash makes it). */
export interface CopySend {
  /** Settles when every byte arrived (md5 and count of what was sent), or the send failed. */
  readonly done: Promise<{ md5: string; bytes: number }>;
  /** Bytes sent so far. */
  sent(): number;
  /** Told each time more was sent. */
  onProgress?: (bytes: number) => void;
}

/** The ramfs copy made during the image pass; whoever gets it removes it. */
export interface ReadyCopy {
  file: SpoolFile;
  remove: () => void;
  /** It is already on its way (CopySend): the stage waits for it instead of sending the file. */
  sending?: CopySend;
  /** Stop that send and wait until it stopped (the board's partial file is removed by put). */
  stopSending?: () => Promise<void>;
}

export interface Preflight {
  facts: TargetFacts;
  image?: ImageInfo;
  scan?: ImageScan;
  plan: Plan;
  /** The boot partition edit: customization and/or the record's placeholder. */
  boot?: PreparedBoot;
  /** This flash's id (in the record). */
  flashId: string;
  /** The block map in use: only its ranges (and the customization's) are written and read back. */
  bmap?: Bmap;
  /** The transport measurement, when one ran. */
  transport?: { rates: Rates; estimates: TransportEstimate[] };
  /** What a copy made on this side leaves out (zero blocks, unmapped ranges), when it is one. */
  pack?: PackLayout;
  /** The copy to send (ramfs, transport lzo), made during the image pass. */
  copy?: ReadyCopy;
}

/** The bytes the board gets are made on this side (raw, or gzip -1 / lzop -1 / xz -1 of the image) and pass through boardSource(). */
function madeHere(plan: Plan, local: boolean): boolean {
  return (plan.codec === "raw" || reencoded(plan)) && (!local || plan.mode === "ramfs");
}

/** This side decodes the image and encodes it again (transport gzip, lzo or xz). */
function reencoded(plan: Plan): boolean {
  return plan.transport === "gzip" || plan.transport === "lzo" || plan.transport === "xz";
}

/**
 * Everything that can be checked before anything changes (facts, image, customization, plan), shared
 * by `flash` and `check`. Refusals are returned in plan.refusals, not thrown.
 */
export async function preflight(o: PreflightOptions, ctx: FlashContext, phase: PhaseRunner, onScan?: (n: number, total?: number) => void): Promise<Preflight> {
  const asked = o.local ? undefined : o.transport && o.transport !== "auto" ? o.transport : undefined;
  if (asked === "xz" && !Bun.which("xz")) throw new UserError("--transport xz encodes the image with this machine's xz, and xz is not installed here.", "Install it (apt-get install xz-utils), or choose another transport (--transport auto).");
  const measure = !o.local && !asked;
  // Where the preflight's time goes (CONSOLA_LEVEL=4 shows it).
  const t0 = performance.now();
  const trace = (what: string) => consola.debug(`preflight +${((performance.now() - t0) / 1000).toFixed(1)} s: ${what}`);
  // The image's own pass (decode all of it, hashes, zero blocks, the sample) needs nothing from the
  // board: it starts as soon as the image is open and runs while the board is probed and the boot
  // partition edited; the ranges the edit touches are hashed again after it (patchRanges: the
  // first range or two). With a block map the ranges follow from the edit, so the pass waits for it.
  const stopEarly = new AbortController();
  const dropProbing = async () => {
    const p = await probing?.catch(() => undefined);
    probing = undefined;
    if (p) await dropProbe(p);
  };
  let early: Promise<ImageScan> | undefined;
  // The ramfs copy made during the pass: remote ramfs (the default) when lzo may be the transport;
  // local ramfs into the work dir (copyDir) when the board would re-encode the file anyway.
  const spoolWanted = o.spool && !o.local && o.mode !== "stream" && (!asked || asked === "lzo");
  const localSpoolWanted = (image: ImageInfo) =>
    Boolean(o.spool && o.local && o.copyDir && o.mode !== "stream" && process.getuid?.() === 0 && reencodedLocally(image.format));
  // The facts, once what onFacts started (the work dir and its busybox) is done too.
  let factsStaged!: (f: TargetFacts) => void;
  let factsFailed!: (e: unknown) => void;
  const staged = new Promise<TargetFacts>((resolve, reject) => ((factsStaged = resolve), (factsFailed = reject)));
  staged.catch(() => {});
  let spool: Spool | undefined;
  let handedOver = false;
  let boardBusy: Promise<unknown> | undefined;
  let probing: Promise<LinkProbe> | undefined;
  // The copy's send during the pass (o.sendCopy), and how to stop it.
  let sending: CopySend | undefined;
  const sendStop = new AbortController();
  const stopSending = async () => {
    sendStop.abort();
    await sending?.done.catch(() => {});
  };
  const scanOpts = (image: ImageInfo) => ({
    sample: measure ? { bytes: 8 << 20, sizeHint: image.rawSizeHint } : undefined,
    onProgress: (n: number) => onScan?.(n, image.rawSizeHint),
    tap: spool && ((c: Uint8Array, pos: number) => spool!.feed(c, pos)),
  });
  try {
    const { facts, image, bmap } = await phase("facts", async () => {
      const opened = (async () => {
        if (!o.imagePath) return { image: undefined, bmap: undefined };
        const image = await openImage(o.imagePath);
        const bmapPath = o.bmapFile ?? (o.bmap === false ? undefined : findBmap(image.path));
        const bmap = bmapPath ? loadBmap(bmapPath) : undefined;
        if (bmap && image.rawSizeHint !== undefined && bmap.imageSize !== image.rawSizeHint) {
          throw new UserError(`The block map ${bmap.path} is for an image of ${bmap.imageSize} bytes; ${image.path} holds ${image.rawSizeHint}.`, "Use the .bmap made for this image, or flash without it (--no-bmap).");
        }
        if (!bmap) {
          if (spoolWanted) {
            const enc = await encoderFor("lzo").catch(() => undefined);
            const started = enc ? Spool.start(enc, Number.POSITIVE_INFINITY) : "this side has no lzop";
            if (typeof started === "string") trace(`no copy during the pass: ${started}`);
            else spool = started;
          } else if (localSpoolWanted(image)) {
            // The encoder is the busybox in the work dir: wait for it (local facts take a second or two).
            const f = await staged;
            // Only where the plan can pick it: the lzo copy replaces a copy of the file as it is, so
            // the file must fit too (else: stream, or a refusal). /dev/shm is the board's RAM: not
            // filled in vain.
            const started =
              !fitsShm(image.fileSize, f.shmAvail)
                ? `${image.path} does not fit in /dev/shm`
                : Spool.start([`${o.copyDir}/busybox`, "lzop", "-1", "-c"], f.shmAvail - SHM_MARGIN, o.copyDir, undefined, 0);
            if (typeof started === "string") trace(`no copy during the pass: ${started}`);
            else spool = started;
          }
          early = scanImage(image, { ...scanOpts(image), signal: stopEarly.signal });
          // Awaited in the plan phase; a preflight that ends before (a refusal, a lost board) stops it.
          early.catch(() => {});
        }
        return { image, bmap };
      })();
      const [facts, img] = await Promise.all([
        gatherFacts(o.target, o.local ? o.imagePath : undefined).then((f) => {
          trace("facts");
          spool?.cap(f.shmAvail - SHM_MARGIN);
          boardBusy = o.onFacts?.(f)?.then(() => trace("work dir staged"), () => {});
          Promise.resolve(boardBusy).then(() => factsStaged(f));
          // The measurement's directory and busybox too, after the work dir (one thing at a time
          // on the board); it is used once the image is read.
          // Not when the copy may go during the pass (it would hold the board up): made later if needed.
          if (measure && !(spoolWanted && o.sendCopy)) {
            probing = Promise.resolve(boardBusy).then(() => startProbe(o.target, f.arch));
            probing.then(() => trace("probe dir"), () => {});
          }
          return f;
        }, (e) => {
          factsFailed(e);
          throw e;
        }),
        opened,
      ]);
      ctx.facts = facts;
      await o.hooks.callHook("facts:gathered", ctx);
      return { facts, ...img };
    });
    return await phase("plan", async () => {
      const services = [...o.services];
      await o.hooks.callHook("services:resolve", ctx, services);
      if (o.local && o.transport && o.transport !== "auto") ctx.warnings.push("--transport applies to remote flashes; a local flash reads the file as it is");
      let packedBytes: number | undefined;
      const plan = (img?: { rawSize: number }, t?: { transport: TransportName; reason: string; encodedRatio?: number }) =>
        planFlash({
          transport: t?.transport ?? asked,
          transportReason: t?.reason,
          encodedRatio: t?.encodedRatio,
          packedBytes,
          facts,
          image: image && img ? { path: image.path, format: image.format, fileSize: image.fileSize, rawSize: img.rawSize } : undefined,
          local: o.local,
          mode: o.mode,
          servicePatterns: services,
          harness: isHarness(),
        });
      const flashId = randomBytes(8).toString("hex");
      if (!image) return { facts, flashId, plan: (ctx.plan = plan()) };
      // Refuse before reading all of the image what the board alone rules out (sudo, root device,
      // /dev/shm) and an image that cannot fit when its size is known cheaply (raw, xz index).
      // (Size unknown yet: 0, which no size check refuses.)
      const quick = plan({ rawSize: image.rawSizeHint ?? 0 });
      if (quick.refusals.length) return { facts, image, flashId, plan: (ctx.plan = quick) };
      // Nothing the board alone rules out: the copy may go while the pass still makes it.
      if (spool && o.sendCopy && !spool.problem) {
        sending = o.sendCopy(spool.follow(sendStop.signal));
        sending.done.then((d) => trace(`copy sent during the pass: ${d.bytes} bytes`), () => {});
        trace("sending the copy during the pass");
      }
      // The measurement comes after the scan, not beside it: the scan keeps this side's CPUs busy
      // (xz -T0, hashing on this thread, which also encrypts the SSH stream), and a link measured then
      // came out at 1.7 MiB/s on a board that took 13 (so the wrong transport was picked).
      try {
        const boot = o.prepareBoot ? await o.prepareBoot(ctx, image, o.record === false ? undefined : { flashId }) : undefined;
        trace("boot partition edit");
        if (boot?.noRecord) ctx.warnings.push(`no flash record on the new boot partition: ${boot.noRecord}`);
        let scan: ImageScan;
        if (early) {
          const alone = await early;
          scan = boot?.extents.length ? { ...alone, ranges: await patchRanges(image, alone.ranges, boot.extents) } : alone;
        } else {
          // With a block map, the disk gets its ranges plus the boot partition edit's sectors, nothing else.
          const regions = bmap ? mergeRegions([...bmap.ranges, ...(boot?.extents ?? []).map((e) => ({ offset: e.offset, length: e.data.length }))]) : undefined;
          scan = await scanImage(image, { ...scanOpts(image), extents: boot?.extents, regions, bmap });
        }
        trace("image read");
        // The copy made during the pass carries the image without the zero runs it left out: the pack
        // layout is made of those (each one of the scan's runs; every byte else is in the copy).
        let spooled = spool ? await spool.end(scan.rawSize) : undefined;
        if (spool) trace(spooled ? `copy made during the pass: ${spooled.bytes} bytes, ${spooled.zeroRuns.length} of ${scan.zeroRuns.length} zero runs left out` : `no copy during the pass: ${spool.problem}`);
        const scanRuns = new Set(scan.zeroRuns.map((r) => `${r.offset}+${r.length}`));
        const runs = spooled && !bmap && spooled.zeroRuns.every((r) => scanRuns.has(`${r.offset}+${r.length}`)) ? spooled.zeroRuns : scan.zeroRuns;
        const layout = packLayout(scan.rawSize, runs, bmap ? mergeRegions(bmap.ranges) : undefined);
        packedBytes = layout?.dataBytes;
        const layoutMatches = Boolean(spooled && layout && runs === spooled.zeroRuns && layout.dataBytes === spooled.rawBytes);
        if (!layoutMatches) spooled = undefined;
        let planned = plan(scan);
        let transport: Preflight["transport"];
        // The copy already on its way is the transport: lzop -1 is the board's fastest decoder and the
        // copy's bytes are already made, so nothing is measured (see SENT_DURING_PASS).
        const sentPlan = sending && spooled && layoutMatches && packedBytes && planned.refusals.length === 0
          ? plan(scan, { transport: "lzo", reason: SENT_DURING_PASS, encodedRatio: spooled.bytes / packedBytes })
          : undefined;
        if (sentPlan && sentPlan.mode === "ramfs" && sentPlan.refusals.length === 0) planned = sentPlan;
        else if (sending) {
          await stopSending();
          trace("the copy sent during the pass is not used");
          sending = undefined;
        }
        if (measure && !sending && scan.sample && planned.refusals.length === 0) {
          try {
            probing ??= startProbe(o.target, facts.arch);
            const probe = await probing;
            const sample = { bytes: scan.sample, fileRatio: image.fileSize / scan.rawSize, hostDecodeRate: scan.rawSize / Math.max(scan.seconds, 0.001) };
            const rates = await measureRates(o.target, probe, facts.cpus, image.format, sample, planned.mode);
            if (spooled && planned.mode === "ramfs" && packedBytes) rates.ratio.lzo = spooled.bytes / packedBytes;
            const estimates = estimateTransports(
              {
                mode: planned.mode,
                format: image.format,
                fileSize: image.fileSize,
                rawSize: scan.rawSize,
                packedBytes,
                shmRoom: facts.shmAvail - SHM_MARGIN,
                spooled: spooled && planned.mode === "ramfs" ? { transport: "lzo", bytes: spooled.bytes } : undefined,
              },
              rates,
            );
            trace("measured");
            const pick = pickTransport(estimates, rates);
            planned = plan(scan, { transport: pick.transport, reason: pick.reason, encodedRatio: rates.ratio[pick.transport] });
            transport = { rates, estimates };
          } catch (e) {
            ctx.warnings.push(`the transport was not measured (${e instanceof Error ? e.message : String(e)}); ${planned.transportReason}`);
          }
        }
        if (o.local && planned.mode === "ramfs" && planned.refusals.length === 0 && reencodedLocally(image.format)) {
          // The board's busybox decodes the copy in RAM twice before the reboot (its check, the write)
          // and again for a repair, and its xz and bzip2 decoders are its slowest (a TCG board: xz 9
          // MiB/s, lzop -d several times that; no zstd at all). So the file is decoded once, here, by a
          // decoder that checks it, into an lzop -1 copy without the zero blocks; decoder, encoder and
          // hashing run as separate processes, on separate cores where the board has them. Not when
          // that copy would not fit where the file would, nor for an .xz without the xz program (the
          // JS decoder is slower than busybox's). The copy is made during the image check (copyDir),
          // so the file is decoded once in all: L2.img.xz on a one-CPU TCG board, 2m11s -> 1m37s
          // (x86_64); the arm64 board's e2e case, 361 -> 215 s.
          const lzo = plan(scan, { transport: "lzo", reason: LOCAL_LZO });
          if (lzo.mode === "ramfs" && lzo.refusals.length === 0) planned = lzo;
        }
        const pack = layout && madeHere(planned, o.local) ? layout : undefined;
        if (spooled && asked === "lzo" && planned.refusals.length === 0) {
          // Asked for lzo: not measured, the ratio is known exactly now.
          planned = plan(scan, { transport: "lzo", reason: planned.transportReason, encodedRatio: spooled.bytes / (packedBytes ?? scan.rawSize) });
        }
        const use = spooled && pack && planned.mode === "ramfs" && planned.transport === "lzo" && planned.refusals.length === 0;
        let copy: ReadyCopy | undefined;
        if (use && spool) {
          const s = spool;
          copy = { file: spooled!, remove: () => s.remove(), sending, stopSending: sending && stopSending };
          handedOver = true;
        }
        return { facts, image, scan, boot, flashId, bmap, transport, pack, copy, plan: (ctx.plan = planned) };
      } finally {
        await dropProbing();
      }
    });
  } finally {
    stopEarly.abort();
    await dropProbing();
    if (!handedOver) {
      spool?.remove();
      await stopSending();
    }
  }
}

/** Local ramfs flashes of these are copied to RAM as lzop -1 (see the plan phase). */
const REENCODED_LOCALLY: ReadonlySet<ImageFormat> = new Set(["xz", "bzip2", "zstd"]);
function reencodedLocally(format: ImageFormat): boolean {
  return REENCODED_LOCALLY.has(format) && (format !== "xz" || Bun.which("xz") !== null);
}
const LOCAL_LZO = "busybox decodes the copy twice before the reboot (its check, the write), and lzop -1 several times faster than xz or bzip2 (zstd not at all)";

/** The plan's reason when the copy went during the image pass. */
const SENT_DURING_PASS = "not measured: it went to the board while the image was checked (lzop -1 is the fastest decoder a board's busybox has)";

export async function runFlash(o: FlashOptions): Promise<FlashResult> {
  const log = o.log ?? consola;
  const ctx: FlashContext = { target: o.target, hooks: o.hooks, warnings: [] };
  const timings: Record<string, number> = {};
  const phase = async <T>(name: Phase, fn: () => Promise<T>): Promise<T> => {
    await o.hooks.callHook("phase:before", ctx, name);
    const t = performance.now();
    const r = await fn();
    timings[name] = Math.round(performance.now() - t);
    await o.hooks.callHook("phase:after", ctx, name, timings[name]!);
    return r;
  };

  const t = o.target;
  const work = `/dev/shm/flash-live-${randomBytes(4).toString("hex")}`;
  // The helper's work dir and its busybox go to the board while this side still reads the image:
  // two root commands (a sudo each, 0.5-0.9 s on a TCG board) off the path to the write. Nothing in
  // it runs before the confirmation; a flash that does not go ahead drops it (and so does a lost
  // connection: the guard's stdin ends).
  let prestaged: Promise<RemoteProcess> | undefined;
  // The dir exists (its busybox may still be on its way): the copy may go into it.
  let dirMade!: () => void;
  const dirReady = new Promise<void>((resolve) => (dirMade = resolve));
  const onFacts = (f: TargetFacts) => (prestaged = startBusyboxDir(t, work, f.arch, { root: true, onDirMade: dirMade }));
  let readyCopy: ReadyCopy | undefined;
  // Confirmed ahead (--yes): the ramfs copy goes into the work dir while the image is checked.
  const sendCopy = o.yes
    ? (bytes: AsyncIterable<Buffer>): CopySend => {
        const hasher = new Bun.CryptoHasher("md5");
        let sent = 0;
        const send: CopySend = {
          sent: () => sent,
          done: (async () => {
            // The dir made, or its staging failed (then prestaged says why).
            await Promise.race([dirReady, prestaged]);
            async function* counted() {
              for await (const b of bytes) {
                if (sent === 0) consola.debug("copy: its first bytes are on their way to the board");
                hasher.update(b);
                sent += b.length;
                send.onProgress?.(sent);
                yield b;
              }
            }
            await t.put(`${work}/image`, Readable.from(counted(), { objectMode: false }), { mode: "0600", root: true });
            return { md5: hasher.digest("hex"), bytes: sent };
          })(),
        };
        return send;
      }
    : undefined;
  const abandon = async <T>(e: T): Promise<never> => {
    readyCopy?.remove();
    await readyCopy?.stopSending?.();
    const g = await prestaged?.catch(() => undefined);
    if (g) await dropDir(g).catch(() => {});
    throw e;
  };
  let sendingNow: CopySend | undefined;
  const progress = createProgress("checking image", undefined, undefined, () => (sendingNow?.sent() ? `  (sending the copy: ${formatBytes(sendingNow.sent())})` : ""));
  const sendAndShow = sendCopy && ((bytes: AsyncIterable<Buffer>) => (sendingNow = sendCopy(bytes)));
  const { facts, image, scan, plan, boot, bmap, pack, copy } = await preflight({ ...o, onFacts, spool: true, sendCopy: o.local ? undefined : sendAndShow, copyDir: o.local ? work : undefined }, ctx, phase, (n) => progress.update(n)).catch(abandon);
  // The copy made during the image pass lives until it is sent, or until the flash stops before.
  readyCopy = copy;
  const custom = boot?.customization;
  // Bytes the helper writes from the image: the mapped ranges with a block map, else all of it.
  const imageBytes = bmap ? bmap.mappedBytes : scan?.rawSize ?? 0;
  if (scan) progress.finish(`image ok: ${formatBytes(scan.rawSize)} raw, sha256 ${scan.sha256.slice(0, 16)}…`);
  if (plan.refusals.length) return abandon(refusal(o.target, plan.refusals));
  if (!image || !scan) return abandon(new Error("preflight returned no image scan without a refusal"));

  // ---- confirm --------------------------------------------------------------------------------------
  await phase("confirm", async () => {
    const summary = describePlan(o, facts, plan, image, scan, boot, bmap, pack, copy);
    log.box(summary);
    for (const n of plan.notes) log.info(n);
    if (o.yes) return;
    const phrase = `flash ${facts.hostname}`;
    if (!o.interactive || !o.confirm) {
      throw new UserError("Refusing to overwrite a disk without confirmation in a non-interactive run.", "Pass --yes to confirm in scripts.", 2);
    }
    const ok = await o.confirm(`This ERASES ${plan.diskPath} on ${o.target.name}. Type "${phrase}" to go on`, phrase);
    if (!ok) throw new UserError("Not confirmed; nothing was changed.", undefined, 1);
  }).catch(abandon);

  // ---- stage: everything the helper needs goes to tmpfs before anything is stopped ---------------
  let bytesSent = 0;
  const cleanup = async () => {
    await t.exec(["rm", "-rf", work], { root: true, check: false }).catch(() => {});
  };
  let staged: Staged;
  let guard: RemoteProcess | undefined;
  try {
    staged = await phase("stage", async () => {
      guard = await (prestaged ?? startBusyboxDir(t, work, facts.arch, { root: true }));
      const files: StagedFile[] = [{ name: "flash.sh", data: flashScript }];
      if (isHarness()) files.push({ name: "harness", data: "1\n" });
      const fault = faultScript();
      if (fault) files.push({ name: "fault.sh", data: fault, mode: "0700" });
      files.push({ name: "units", data: plan.units.map((u) => `${u}\n`).join("") });
      if (pack) files.push({ name: "layout", data: layoutText(pack) });
      else if (bmap) files.push({ name: "ranges", data: mergeRegions(bmap.ranges).map((r) => `${r.offset} ${r.length}\n`).join("") });
      if (o.verify) files.push({ name: "verify", data: scan.ranges.map((r) => `${r.offset} ${r.length} ${r.md5}\n`).join("") });
      if (boot?.extents.length) {
        const { index, data } = encodeExtents(boot.extents);
        const dump = patchDumpPath();
        if (dump) {
          await Bun.write(`${dump}.idx`, index);
          await Bun.write(`${dump}.bin`, data);
        }
        if (dump && boot.record) await Bun.write(`${dump}.record`, `${boot.record.offset} ${boot.record.flashId}\n`);
        files.push({ name: "patch", data: index }, { name: "patch.bin", data });
      }
      if (boot?.record) {
        const head = recordHeadText({
          flashId: boot.record.flashId,
          version: o.version ?? "?",
          image: image.path,
          imageSha256: scan.sha256,
          imageBytes: scan.rawSize,
          writtenBytes: imageBytes,
          disk: plan.diskPath,
          mode: o.local ? `${plan.mode} (local)` : plan.mode,
          sentAs: plan.codec,
          customized: custom?.mechanism ?? "no",
          from: o.local ? "this board (--local)" : hostname(),
          started: new Date(),
        });
        files.push({ name: "record", data: head }, { name: "record.pad", data: recordPadding() });
      }
      await putFiles(t, work, files);
      if (plan.mode === "ramfs") {
        const dest = `${work}/image`;
        // A copy made on this side (raw, or gzip -1 / xz -1 of the image) is proven here: the raw bytes that
        // went into it are hashed as they go and must be the image checked before; the board then
        // only hashes what arrived. A file sent as it is (xz, gz, bz2) is decoded once on the board
        // instead: that proves its busybox decodes all of it, before the point of no return.
        // The copy made during the image pass (copy) was made from the pass's own bytes; what is
        // read back from its file must be what was written to it.
        const here = madeHere(plan, o.local);
        let sentDigest: string;
        let rawMd5: Bun.CryptoHasher | undefined;
        if (copy?.sending) {
          // On its way since the image check: wait for the rest of it.
          const progress = createProgress("sending", copy.file.bytes);
          const already = copy.sending.sent();
          copy.sending.onProgress = (n) => progress.update(n);
          const t0 = performance.now();
          const done = await copy.sending.done;
          progress.finish(
            already >= done.bytes
              ? `sent ${formatBytes(done.bytes)} during the image check`
              : `sent ${formatBytes(done.bytes)}: ${formatBytes(already)} during the image check, the rest in ${fmtDuration((performance.now() - t0) / 1000)}`,
          );
          bytesSent += done.bytes;
          sentDigest = done.md5;
        } else if (copy && o.local) {
          // Made in the work dir during the image check (copyDir): moved into place on the same
          // tmpfs. Its md5 as written is what the board's check below must find.
          await t.exec([`${work}/busybox`, "mv", copy.file.path, dest], { root: true });
          log.info(`copied to RAM during the image check: ${formatBytes(copy.file.bytes)} (lzop -1 of ${formatBytes(copy.file.rawBytes)})`);
          sentDigest = copy.file.md5;
          bytesSent += copy.file.bytes;
        } else {
          const raw = !copy && here && (reencoded(plan) || pack) ? new Bun.CryptoHasher("md5") : undefined;
          rawMd5 = raw;
          // A local re-encoded copy: its size is known only at its end, so the progress counts the
          // image's bytes read instead.
          const byRaw = o.local && raw !== undefined && plan.codec !== "raw";
          let rawRead = 0;
          const src = copy
            ? collectEvery(createReadStream(copy.file.path, { highWaterMark: 4 << 20 }))
            : boardSource(image, plan, {
                onRaw:
                  raw &&
                  ((c) => {
                    raw.update(c);
                    rawRead += c.length;
                    if (byRaw) progress.update(rawRead);
                  }),
                pack,
                // Local: the busybox staged in the work dir on tmpfs (this side's temp dir is the
                // board's /tmp, which may be noexec or on the disk about to be overwritten).
                encoder: o.local && plan.transport === "lzo" ? [`${work}/busybox`, "lzop", "-1", "-c"] : await encoderOf(plan),
              });
          const hasher = new Bun.CryptoHasher(here ? "md5" : "sha256");
          const progress = createProgress(
            o.local ? "copying to RAM" : "sending",
            byRaw ? scan.rawSize : copy ? copy.file.bytes : plan.codec === "raw" ? (pack?.dataBytes ?? scan.rawSize) : plan.transport === "as-is" ? image.fileSize : undefined,
          );
          let sent = 0;
          const counted = src.pipe(
            new Transform({
              highWaterMark: 4 << 20,
              transform(chunk, _enc, cb) {
                sent += chunk.length;
                hasher.update(chunk);
                if (!byRaw) progress.update(sent);
                cb(null, chunk);
              },
            }),
          );
          try {
            await t.put(dest, counted, { mode: "0600", root: true });
          } finally {
            // A decompressor or encoder (transport gzip/xz/raw) must not outlive a failed copy: it would keep this
            // process running after the error is reported.
            src.destroy();
          }
          progress.finish();
          bytesSent += sent;
          sentDigest = hasher.digest("hex");
        }
        copy?.remove();
        if (copy && sentDigest !== copy.file.md5) {
          throw new UserError(
            `The copy made on this machine changed on its disk before it was sent (md5 ${sentDigest}, written as ${copy.file.md5}).`,
            "Nothing was overwritten. Try again; if it repeats, check this machine's disk and memory.",
          );
        }
        if (here && !copy) {
          const rawDigest = rawMd5 ? rawMd5.digest("hex") : sentDigest;
          if (rawDigest !== scan.md5) {
            throw new UserError(
              `${image.path} changed while it was sent: the bytes sent are not the image checked before (md5 ${rawDigest}, expected ${scan.md5}).`,
              "Nothing was overwritten. Leave the image file alone during a flash, then try again.",
            );
          }
        }
        log.info(here ? "checking the copy on the board: md5 of what arrived" : "checking the copy on the board: sha256, and one full decompression to the image's md5");
        const check = here
          ? await t.exec([`${work}/busybox`, "sh", `${work}/flash.sh`, "check-copy", work, dest], { root: true, check: false })
          : await t.exec([`${work}/busybox`, "sh", `${work}/flash.sh`, "check-source", work, plan.codec, dest], { root: true, check: false });
        const got = parseAt(check.stdout);
        if (check.code !== 0 || got.error) {
          throw new UserError(`The copy on the board failed its check: ${got.error ?? check.stderr.trim()}`, "Nothing was overwritten. Check the image and the board's memory, then try again.");
        }
        const gotDigest = here ? got.source_md5 : got.source_sha256;
        if (gotDigest !== sentDigest) {
          throw new UserError(
            `The copy on the board differs from what was sent (${here ? "md5" : "sha256"} ${gotDigest} vs ${sentDigest}).`,
            "Nothing was overwritten. Try again; if it repeats, suspect the board's RAM.",
          );
        }
        if (!here && got.raw_md5 !== scan.md5) {
          throw new UserError(`The copy on the board does not decompress to the image (md5 ${got.raw_md5}, expected ${scan.md5}).`, "Nothing was overwritten. Try again.");
        }
        return { source: dest };
      }
      return { source: o.local ? o.imagePath : "-" };
    });
  } catch (e) {
    readyCopy?.remove();
    await readyCopy?.stopSending?.();
    await cleanup();
    guard?.stdin.end();
    throw e;
  }
  readyCopy?.remove();
  // From here the helper owns the work dir (and removes it on a pre-commit failure via cleanup()).
  await keepDir(guard!);

  // ---- hand off: the helper quiesces, freezes, writes, verifies, reboots --------------------------
  const outcome = await phase("handoff", async () => {
    const args = [
      "--disk", plan.diskPath,
      "--codec", plan.codec,
      "--source", staged.source,
      "--size", String(scan.rawSize),
      "--stop-units", `${work}/units`,
      "--on-fail", o.onVerifyFail ?? "reboot",
    ];
    for (const m of plan.roMounts) args.push("--ro", m);
    for (const m of plan.freezeMounts) args.push("--freeze", m);
    if (o.verify) args.push("--verify", `${work}/verify`);
    if (boot?.extents.length) args.push("--patch", `${work}/patch`);
    if (boot?.record) args.push("--record", String(boot.record.offset));
    if (pack) args.push("--packed", `${work}/layout`);
    else if (bmap) args.push("--ranges", `${work}/ranges`);
    const detach = staged.source !== "-";
    const argv = [`${work}/busybox`, "sh", `${work}/flash.sh`, detach ? "detach" : "run", work, ...args];
    const proc = await t.spawn(argv, { root: true });
    const follower = followHelper(proc.stdout, imageBytes, log);
    proc.stderr.on("data", () => {});
    proc.stdin.on("error", () => {});
    if (!detach) {
      // Stream mode: the image flows through this session into the helper's decompressor.
      const src = boardSource(image, plan, { pack, encoder: await encoderOf(plan) });
      let sent = 0;
      src.on("data", (c: Buffer) => (sent += c.length));
      src.pipe(proc.stdin);
      await new Promise<void>((resolve) => {
        src.on("end", resolve);
        src.on("error", () => resolve());
        proc.stdin.on("close", () => resolve());
      });
      src.destroy();
      bytesSent += sent;
    } else {
      proc.stdin.end();
    }
    // The session ends when the helper exits (pre-commit failure), or when the board resets.
    const exited = proc.exited;
    const state = await Promise.race([follower.done, exited.then((code) => ({ ...follower.snapshot(), sessionStatus: code }))]);
    proc.kill();
    return state;
  });

  if (!outcome.committed) {
    await cleanup();
    throw new UserError(
      `The helper stopped before overwriting anything: ${outcome.error ?? "it exited early"}.`,
      "The board still runs its old system. Services that were stopped stay stopped until you restart them or reboot.",
    );
  }
  if (outcome.error) ctx.warnings.push(outcome.error);
  if (outcome.recordProblem) ctx.warnings.push(`flash record: ${outcome.recordProblem}`);
  // The session can end after the point of no return (the link drops; sshd and sudo run from the
  // old root, which is being overwritten). The helper ignores the hang-up and goes on (verify,
  // record, reboot); its verdict then comes from the record.
  const sessionLost = !outcome.rebooting && outcome.exitCode === undefined && !outcome.error;
  // Over SSH the session carries the helper's output; on the board itself (--local) it is a pipe.
  const channel = o.local ? "the helper's output" : "the SSH session";
  if (sessionLost) {
    const status = typeof outcome.sessionStatus === "number" ? `exit status ${outcome.sessionStatus}` : o.local ? "no exit status" : "no exit status: the connection dropped";
    log.warn(
      `${channel} ended after the write began (${status}), before the helper reported its result; the helper carries on by itself (verify, flash record, reboot). ${o.local ? "The board reboots when it is done; the flash record on its boot partition will say whether the read-back matched." : "Waiting for the board: the flash record will say whether the read-back matched."}`,
    );
  }
  let verified = outcome.verify;
  if (verified === "failed") {
    throw new UserError(
      `VERIFICATION FAILED: after the write, ${plan.diskPath} does not hold the image; bad ranges (offset+length in bytes): ${describeRanges(outcome.badRanges)}.`,
      o.onVerifyFail === "halt"
        ? "The board was halted so the disk can be inspected; re-flash it."
        : "The board rebooted anyway (--on-verify-fail reboot). Re-flash it; if this repeats, suspect the disk (SD cards wear out).",
    );
  }
  if (verified === "ok" || verified === "repaired") {
    log.success(`verified: every byte on ${plan.diskPath} matches the image${verified === "repaired" ? " (after rewriting bad ranges from RAM)" : ""}`);
  }

  // ---- wait: remote only, until the board runs the new system -------------------------------------
  let after: FlashResult["after"];
  let record: FlashResult["record"];
  if (!o.local && o.reconnect) {
    after = await phase("wait", async () => {
      await o.target.close().catch(() => {});
      const written = sessionLost
        ? "The image was written; whether it was verified is unknown (the session ended first)."
        : verified === "skipped"
          ? "The image was written (not read back: --no-verify)."
          : "The image was written and verified before the reboot.";
      // The record is read on the login that saw the new boot: a second login costs a board that
      // has just booted a few seconds (a handshake and a sudo on a TCG board: ~4 s).
      const flashId = boot?.record?.flashId;
      return waitForBoard(o.reconnect!, facts.bootId, log, custom ? o.newUser : undefined, {
        written,
        onBack: flashId ? async (back) => void (record = await readRecordBack(back, flashId, log, ctx.warnings)) : undefined,
      });
    });
  }
  if (sessionLost) {
    const v = record?.["flash-id"] === boot?.record?.flashId ? record?.verify : undefined;
    if (v === "ok" || v === "repaired" || v === "failed" || (v === "skipped" && !o.verify)) verified = v;
    else if (o.verify && o.local) {
      throw new UserError(
        `The flash's result is not known here: ${channel} ended during the write. The helper reboots the board when it is done; ${boot?.record ? `then ${RECORD_FILE} on its boot partition says whether the read-back matched` : "there is no flash record (--no-record) to say whether the read-back matched"}.`,
        "If the board does not come back, re-flash its disk by other means (SD card reader).",
      );
    } else if (o.verify) {
      throw new UserError(
        `The flash's result is unknown: ${channel} ended during the write and ${boot?.record ? "the flash record could not be read back" : "there is no flash record (--no-record)"}, so nothing confirms the read-back.`,
        "Re-flash the board (the write may be incomplete), or check the disk against the image by other means.",
      );
    }
    if (verified === "failed") {
      throw new UserError(
        `VERIFICATION FAILED: the flash record on the board says the read-back did not match the image (bad ranges, offset+length in bytes: ${record?.["bad-ranges"] ? describeRanges(record["bad-ranges"]) : "?"}).`,
        "Re-flash it; if this repeats, suspect the disk (SD cards wear out).",
      );
    }
  }
  const res: FlashResult = {
    facts,
    plan,
    scan,
    written: imageBytes,
    verified,
    bytesSent,
    rebooted: outcome.rebooting,
    after,
    record,
    timings,
    warnings: ctx.warnings,
  };
  if (outcome.error && verified !== "ok") {
    throw new UserError(`The flash did not complete: ${outcome.error}`, "The board rebooted; if it does not come up, re-flash it (by SD card or flash-live --stream).");
  }
  return res;
}

/** A small file for the helper's work dir (0600 unless said). */
interface StagedFile {
  name: string;
  data: string | Uint8Array;
  mode?: string;
}

/**
 * All of the helper's small files in one root command: each costs a sudo, 0.5-0.9 s on a TCG board
 * with systemd, ten of them most of the staging time. The files travel back to back on stdin; the
 * staged busybox's dd takes exactly each one's length (count_bytes never reads past it), and each
 * file exists with its mode before a byte lands.
 */
export const PUT_FILES_SCRIPT = [
  'cd -- "$1" || exit 1',
  "shift",
  "umask 077",
  "while [ $# -gt 0 ]; do",
  '  : > "$1" && chmod "$2" "$1" || exit 1',
  '  if [ "$3" -gt 0 ]; then ./busybox dd of="$1" bs=65536 count="$3" iflag=count_bytes,fullblock 2>/dev/null || exit 1; fi',
  '  [ "$(./busybox wc -c < "$1")" -eq "$3" ] || { echo "$1: $3 bytes expected, the copy is short" >&2; exit 1; }',
  "  shift 3",
  "done",
].join("\n");

async function putFiles(t: Target, work: string, files: StagedFile[]): Promise<void> {
  const parts = files.map((f) => (typeof f.data === "string" ? Buffer.from(f.data, "utf8") : f.data));
  const args = files.flatMap((f, i) => [f.name, f.mode ?? "0600", String(parts[i]!.length)]);
  await t.exec([`${work}/busybox`, "sh", "-c", PUT_FILES_SCRIPT, "sh", work, ...args], { root: true, stdin: Buffer.concat(parts) });
}

interface Staged {
  /** A file on the board, or "-" for stdin. */
  source: string;
}

/** The bytes that travel to the board: the file as is, or re-encoded when the board cannot decode it. */
/** The program that encodes what this side sends, for the transports that use one. */
async function encoderOf(plan: Plan): Promise<string[] | undefined> {
  if (plan.transport !== "lzo" && plan.transport !== "xz") return undefined;
  const cmd = await encoderFor(plan.transport);
  if (!cmd) throw new UserError(`transport ${plan.transport}: its encoder is not available on this machine.`, "Install xz (apt-get install xz-utils), or choose another transport (--transport auto).");
  return cmd;
}

function boardSource(image: ImageInfo, plan: Plan, opts: { onRaw?: (chunk: Buffer) => void; pack?: PackLayout; encoder?: string[] } = {}): Readable {
  if (plan.transport === "as-is" && !opts.pack) return collectEvery(createReadStream(image.path, { highWaterMark: 4 << 20 }));
  const raw = collectEvery(rawStream(image));
  // The image's raw bytes, before packing and encoding (onRaw hashes them: the proof of a copy made here).
  if (opts.onRaw) raw.on("data", opts.onRaw);
  const stages: Readable[] = [raw];
  if (opts.pack) stages.push(packFilter(opts.pack));
  if (plan.transport === "gzip") stages.push(zlib.createGzip({ level: 1, chunkSize: 1 << 20 }));
  if (opts.encoder) stages.push(spawnFilter(opts.encoder));
  for (let i = 1; i < stages.length; i++) {
    const from = stages[i - 1]!;
    const to = stages[i] as Transform;
    from.on("error", (e) => to.destroy(e));
    from.pipe(to);
  }
  const out = stages.at(-1)!;
  // Destroying the end (a failed copy) stops the decoder at the start too.
  out.on("close", () => raw.destroy());
  return out;
}

/**
 * The send path makes garbage at the link's speed (src/util/gc.ts): a full collection after every
 * 8 MiB read took a 320 MiB flash from 286 to 183-197 MB; at most four a second, so a fast link loses
 * at most ~4 % of this thread to them.
 */
function collectEvery<T extends Readable>(s: T): T {
  const collect = collector(8 << 20, 250);
  s.on("data", (c: Buffer) => collect(c.length));
  return s;
}

export function encodeExtents(extents: { offset: number; data: Uint8Array }[]): { index: string; data: Uint8Array } {
  let size = 0;
  for (const e of extents) size += e.data.length;
  const data = new Uint8Array(size);
  const lines: string[] = [];
  let pos = 0;
  for (const e of extents) {
    data.set(e.data, pos);
    lines.push(`${e.offset} ${e.data.length} ${pos}\n`);
    pos += e.data.length;
  }
  return { index: lines.join(""), data };
}

interface HelperState {
  committed: boolean;
  rebooting: boolean;
  verify: FlashResult["verified"];
  badRanges?: string;
  recordProblem?: string;
  error?: string;
  exitCode?: number;
  /** When the session ended before the helper said it was done: its exit status (null: no status, the connection dropped). */
  sessionStatus?: number | null;
}

/** Parse the helper's "@..." lines, draw the write progress, and resolve when the helper is done. */
function followHelper(stdout: Readable, total: number, log: typeof consola): { done: Promise<HelperState>; snapshot: () => HelperState } {
  const state: HelperState = { committed: false, rebooting: false, verify: "skipped" };
  let progress: ReturnType<typeof createProgress> | undefined;
  /** Set by a phase whose progress bar starts at its first "@progress DONE TOTAL" line. */
  let progressLabel: string | undefined;
  const endProgress = () => {
    progress?.finish();
    progress = undefined;
  };
  let buf = "";
  let resolveDone!: (s: HelperState) => void;
  const done = new Promise<HelperState>((r) => (resolveDone = r));
  const onLine = (line: string) => {
    if (!line.startsWith("@")) {
      if (line.trim()) log.info(`board: ${line}`);
      return;
    }
    const [word, ...rest] = line.slice(1).split(" ");
    const arg = rest.join(" ");
    switch (word) {
      case "phase":
        endProgress();
        if (arg === "write") {
          state.committed = true;
          progress = createProgress("writing", total);
        } else {
          log.info(`board: ${arg}`);
          // The read-back reports its own total (the verified ranges: with a block map, less than the image).
          if (arg === "verify" || arg === "verify again") progressLabel = "reading back";
        }
        break;
      case "progress":
        if (!progress && progressLabel) progress = createProgress(progressLabel, Number(rest[1]) || undefined);
        progressLabel = undefined;
        progress?.update(Number(rest[0]));
        break;
      case "verify-mismatch":
        endProgress();
        state.verify = "repaired";
        state.badRanges = arg;
        log.warn(`read-back found bad ranges (offset+length in bytes): ${describeRanges(arg)}; rewriting them from the copy in RAM`);
        break;
      case "verify-ok":
        endProgress();
        if (state.verify !== "repaired") state.verify = "ok";
        break;
      case "verify-failed":
        endProgress();
        state.verify = "failed";
        state.badRanges = arg;
        break;
      case "record-failed":
        state.recordProblem = arg;
        log.warn(`board: ${arg}`);
        break;
      case "error":
        state.error = arg;
        log.error(`board: ${arg}`);
        break;
      case "reboot":
        state.rebooting = true;
        log.info("board: rebooting into the new image");
        resolveDone(state);
        break;
      case "exit":
        state.exitCode = Number(arg);
        if (!state.committed) resolveDone(state);
        break;
    }
  };
  stdout.on("data", (c: Buffer) => {
    buf += c.toString("utf8");
    let i: number;
    while ((i = buf.indexOf("\n")) >= 0) {
      onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  stdout.on("close", () => resolveDone(state));
  return { done, snapshot: () => state };
}

/** The helper's "OFFSET+LENGTH OFFSET+LENGTH " list, each also in MiB: "67108864+67108864 (64.0 MiB at 64.0 MiB)". */
export function describeRanges(list: string | undefined): string {
  const ranges = (list ?? "").trim().split(/\s+/).filter(Boolean);
  if (!ranges.length) return "?";
  return ranges
    .map((r) => {
      const [off, len] = r.split("+").map(Number);
      return Number.isFinite(off) && Number.isFinite(len) ? `${r} (${formatBytes(len!)} at ${formatBytes(off!)})` : r;
    })
    .join(", ");
}

function parseAt(out: string): Record<string, string> {
  const r: Record<string, string> = {};
  for (const line of out.split("\n")) {
    if (!line.startsWith("@")) continue;
    const sp = line.indexOf(" ");
    r[line.slice(1, sp < 0 ? undefined : sp)] = sp < 0 ? "" : line.slice(sp + 1);
  }
  return r;
}

export type Reconnect = (user?: string, limits?: { connectTimeoutMs?: number; bannerTimeoutMs?: number }) => Promise<Target>;

/**
 * Limits of one poll while the board reboots: a connection made while it is down (a SYN into the
 * void, or accepted by a NAT such as QEMU's user network that then retries its own SYNs with
 * backoff) would otherwise wait until the first retry after sshd came up, seconds late (measured: a
 * light QEMU board's sshd was up 12 s before the poll that had started during its boot got in).
 * After QUICK_POLLS such attempts in a row the limits go (a slow link or server still gets in).
 */
const QUICK_POLL = { connectTimeoutMs: 5_000, bannerTimeoutMs: 3_000 };
const QUICK_POLLS = 12;

/**
 * Until the board answers with a new boot_id. Logs in as before; when that login is refused and the
 * customization created a user (user=, which may take over the old login account), as that user.
 * A board that answers SSH but refuses every login for 2 minutes is reported, not waited out.
 */
export async function waitForBoard(
  reconnect: Reconnect,
  oldBootId: string,
  log: { start: (msg: string) => void; success: (msg: string) => void },
  newUser?: string,
  {
    timeoutMs = 15 * 60_000,
    /** A refused connect costs a millisecond; a board answers within a second of its sshd starting. */
    pollMs = 1000,
    refusedLimitMs = 120_000,
    /** What is known of the disk, for the hints of the errors below. */
    written = "The image was written and verified before the reboot.",
    /** Runs on the login that saw the new boot, before it is closed; must not throw. */
    onBack,
  }: { timeoutMs?: number; pollMs?: number; refusedLimitMs?: number; written?: string; onBack?: (t: Target) => Promise<void> } = {},
) {
  const start = performance.now();
  log.start("waiting for the board to come back");
  let lastErr = "";
  let refusedSince: number | undefined;
  const users: (string | undefined)[] = newUser ? [undefined, newUser] : [undefined];
  let unanswered = 0;
  while (performance.now() - start < timeoutMs) {
    await Bun.sleep(pollMs);
    let refusals = 0;
    for (const user of users) {
      let t: Target | undefined;
      try {
        t = await reconnect(user, unanswered < QUICK_POLLS ? QUICK_POLL : undefined);
        unanswered = 0;
        const r = await t.exec(["sh", "-c", 'cat /proc/sys/kernel/random/boot_id; hostname; . /etc/os-release 2>/dev/null; echo "$PRETTY_NAME"'], { check: false });
        const [bootId, hostname, os] = r.stdout.split("\n");
        if (bootId && bootId !== oldBootId) {
          const as = user ? ` (logged in as ${user}, the configured user)` : "";
          log.success(`the board is back after ${fmtDuration((performance.now() - start) / 1000)}: ${hostname} running ${os || "?"}${as}`);
          await onBack?.(t);
          return { bootId, hostname: hostname ?? "", os: os || undefined, user };
        }
        break;
      } catch (e) {
        if (e instanceof HostKeyError && e.kind === "changed") {
          throw new UserError(
            `The board is back, with a new SSH host key (expected after a re-flash: the new image has its own keys). known_hosts was left unchanged, so flash-live cannot log in to confirm what it runs.`,
            `${e.hint}\nNext time pass --accept-new-host-key, or keep-host-keys=true in the config to carry the old keys over. ${written}`,
          );
        }
        if (e instanceof UserError && /host key/i.test(e.message)) throw e;
        lastErr = e instanceof Error ? e.message : String(e);
        unanswered = e instanceof NoAnswerError ? unanswered + 1 : 0;
        if (!(e instanceof AuthError)) break; // not up yet: no point trying another user
        refusals++;
      } finally {
        await t?.close().catch(() => {});
      }
    }
    if (refusals === users.length) {
      refusedSince ??= performance.now();
      if (performance.now() - refusedSince > refusedLimitMs) {
        throw new UserError(
          `The board is back (its SSH server answers) but refuses every login flash-live can try: ${lastErr}`,
          `${written} The new image decides who may log in: use the user and key it (or your config's user=/ssh-authorized-keys) set up.`,
        );
      }
    } else refusedSince = undefined;
  }
  throw new UserError(
    `The board did not come back with a new boot within ${fmtDuration(timeoutMs / 1000)}${lastErr ? ` (last error: ${lastErr})` : " (it still answered with its old boot_id)"}.`,
    `Check its console. ${written} If it still runs its old system, power-cycle it.`,
  );
}

/**
 * The record from the booted board's boot partition. Its flash-id proves the board runs the disk this
 * flash wrote (not, say, another disk it booted from instead). A missing record is a warning: the
 * image was verified before the reboot either way.
 */
async function readRecordBack(
  t: Target,
  flashId: string,
  log: { success: (msg: string) => void },
  warnings: string[],
): Promise<Record<string, string> | undefined> {
  const script = `for f in /boot/firmware/${RECORD_FILE} /boot/${RECORD_FILE}; do if [ -f "$f" ]; then echo "$f"; cat "$f"; exit 0; fi; done; exit 1`;
  try {
    // As root first (a boot partition may be mounted root-only), else as the login user.
    let r = await t.exec(["sh", "-c", script], { root: true, check: false }).catch(() => undefined);
    if (!r || r.code !== 0) r = await t.exec(["sh", "-c", script], { check: false });
    if (r.code !== 0) {
      warnings.push(`the flash record (${RECORD_FILE}) was not found on the board's mounted boot partition (/boot/firmware or /boot); is it mounted?`);
      return undefined;
    }
    const nl = r.stdout.indexOf("\n");
    const path = r.stdout.slice(0, nl);
    const rec = parseRecord(r.stdout.slice(nl + 1));
    if (rec["flash-id"] !== flashId) {
      warnings.push(
        `${path} on the board is not this flash's record (flash-id ${rec["flash-id"] ?? "missing"}, expected ${flashId}): the board may have booted from another disk than the one written.`,
      );
      return rec;
    }
    log.success(
      `flash record on the board (${path}): verify ${rec.verify ?? "?"}, ${rec.image ?? "?"} sha256 ${(rec["image-sha256"] ?? "?").slice(0, 16)}…, written in ${rec["write-seconds"] ?? "?"} s, read back in ${rec["verify-seconds"] ?? "?"} s`,
    );
    return rec;
  } catch (e) {
    warnings.push(`could not read the flash record back: ${e instanceof Error ? e.message : String(e)}`);
    return undefined;
  }
}

function refusal(t: Target, reasons: string[]): UserError {
  return new UserError(`Refusing to flash ${t.name}; nothing was changed:\n  - ${reasons.join("\n  - ")}`, undefined, 1);
}

function describePlan(o: FlashOptions, facts: TargetFacts, plan: Plan, image: ImageInfo, scan: ImageScan, boot?: PreparedBoot, bmap?: Bmap, pack?: PackLayout, copy?: ReadyCopy): string {
  const custom = boot?.customization;
  const lines = [
    `target     ${o.target.name}  (${facts.hostname}, ${facts.model ?? facts.arch}, ${facts.os ?? "?"})`,
    `disk       ${plan.diskPath}  ${formatBytes(plan.disk.sizeBytes)}${plan.disk.model ? `  ${plan.disk.model}` : ""}  (root on /dev/${plan.rootDevice?.name ?? "?"})`,
    `image      ${image.path}  ${image.format}, ${formatBytes(image.fileSize)} -> ${formatBytes(scan.rawSize)}`,
    `mode       ${plan.mode}${o.local ? " (local)" : ""}: ${plan.modeReason}`,
    `sent as    ${plan.codec}${plan.transport === "gzip" ? " (gzip -1 made on this side)" : plan.transport === "xz" ? " (xz -1 made on this side)" : plan.transport === "lzo" ? (copy && o.local ? ` (lzop -1 made in RAM during the image check: ${formatBytes(copy.file.bytes)})` : copy ? ` (lzop -1 made on this side during the image check: ${formatBytes(copy.file.bytes)}${copy.sending ? `, ${formatBytes(copy.sending.sent())} sent already` : " ready"})` : o.local ? " (lzop -1 made while copying to RAM)" : " (lzop -1 made on this side)") : plan.transport === "raw" && image.format !== "raw" ? " (decompressed on this side)" : ""}: ${plan.transportReason}`,
    `stops      ${plan.units.length ? plan.units.join(", ") : "no services"}`,
    `customize  ${custom ? custom.summary : "no (plain flash)"}`,
    ...(bmap ? [`bmap       ${bmap.path}: ${formatBytes(bmap.mappedBytes)} of ${formatBytes(bmap.imageSize)} mapped; only those ranges are written (--no-bmap: all)`] : []),
    ...(pack
      ? [
          o.local
            ? `packed     ${formatBytes(pack.dataBytes)} of the image's bytes go into the copy${pack.zeroBytes ? `; ${formatBytes(pack.zeroBytes)} of zero blocks are written from /dev/zero` : ""}${bmap ? "; unmapped ranges are not copied" : ""}`
            : `packed     ${formatBytes(pack.dataBytes)} of the image's bytes travel${pack.zeroBytes ? `; ${formatBytes(pack.zeroBytes)} of zero blocks are written from the board's /dev/zero` : ""}${bmap ? "; unmapped ranges are not sent" : ""}`,
        ]
      : []),
    `verify     ${o.verify ? `read back every ${bmap ? "written " : ""}byte before the reboot` : "no (--no-verify)"}`,
    `record     ${boot?.record ? `${RECORD_FILE} on the new boot partition (--no-record: none)` : o.record === false ? "no (--no-record)" : `none: ${boot?.noRecord ?? "no boot partition edit"}`}`,
  ];
  return lines.join("\n");
}
