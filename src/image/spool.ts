import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync, readSync, statfsSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { collector } from "../util/gc.ts";
import { privateTempDir } from "../util/private-tmp.ts";
import { MAX_PACK_RANGES } from "./pack.ts";
import { ZERO_BLOCK } from "./scan.ts";

/**
 * The ramfs copy, made during the image pass. A remote ramfs flash sends a copy it makes here
 * (lzop -1 of the image without its zero blocks, src/image/pack.ts); made after the pass, that is a
 * second decode of the whole image, and on a 2-core machine that also runs the board's link (or on a
 * laptop beside other work) the copy then goes at this side's CPU speed, not the link's: B.img.xz
 * (1 GiB raw) went at 7-9 MiB/s into a board that takes 16.8 MB/s. So the pass itself feeds the
 * encoder: each 1 MiB block that is not all zeros, in order, goes to `lzop -1`, whose output lands in
 * a private file on this side (0700 dir, 0600 file, removed when the flash ends or the process exits;
 * src/util/private-tmp.ts).
 * If the measurement then picks lzo, the copy is that file, sent at the link's speed; a flash
 * confirmed ahead (--yes) sends it while it grows instead (follow()), so the send overlaps the pass.
 *
 * The file holds exactly the "d" ranges of the pack layout made from the zero runs it left out
 * (SpoolFile.zeroRuns). It decides each run as the run ends, not knowing how many follow, and the
 * layout may not exceed MAX_PACK_RANGES ranges (the helper pays a process or two per range): so it
 * leaves out at most MAX_SKIPPED runs, and the later ones only when they are long (skipThreshold);
 * a run kept goes to the encoder as zeros (lzop makes ~4 KiB of a MiB of them). An image with up
 * to half that many runs is packed as fully as the scan's own layout; one with thousands (a
 * fragmented filesystem) still has its long runs left out. Its md5 is taken as it is written, and
 * the bytes read back to send are hashed again: a file that changed on this disk is caught before
 * anything on the board is overwritten.
 *
 * Bounded: the file may not outgrow `maxBytes` (the board's /dev/shm room once known, and this disk's
 * free space less a margin); past it the spool gives up and the flash makes its copy as before.
 */
export interface SpoolFile {
  path: string;
  /** Encoded bytes in the file. */
  bytes: number;
  /** md5 of the file as written. */
  md5: string;
  /** Raw (image) bytes that went in: the non-zero blocks. */
  rawBytes: number;
  /** The transport it is: what the board decodes. */
  transport: "lzo";
  /** The zero runs (whole ZERO_BLOCK blocks) it left out, in order: the "z" ranges of its pack layout. */
  zeroRuns: { offset: number; length: number }[];
}

/** The most zero runs a copy leaves out: the layout they make has at most MAX_PACK_RANGES ranges. */
export const MAX_SKIPPED = Math.floor((MAX_PACK_RANGES - 1) / 2);

/**
 * The shortest zero run left out once `skipped` runs are: any run for the first half of the budget,
 * then 4, 16 and 64 blocks for the next quarter, eighth and the rest. Past the budget: none.
 */
export function skipThreshold(skipped: number, max = MAX_SKIPPED): number {
  if (skipped >= max) return Number.POSITIVE_INFINITY;
  const blocks = skipped < max / 2 ? 1 : skipped < (max * 3) / 4 ? 4 : skipped < (max * 7) / 8 ? 16 : 64;
  return blocks * ZERO_BLOCK;
}

/** Free space this side keeps when spooling. */
const DISK_MARGIN = 1 << 30;

export class Spool {
  private readonly path: string;
  private readonly fd: number;
  private readonly child: ChildProcess;
  private readonly md5 = new Bun.CryptoHasher("md5");
  private readonly exited: Promise<number | null>;
  private readonly collect = collector(8 << 20, 250);
  private block = Buffer.allocUnsafe(ZERO_BLOCK);
  private blockStart = 0;
  private fill = 0;
  /** Bytes in the file. */
  private onDisk = 0;
  /** The encoder exited 0 and every byte is in the file. */
  private complete = false;
  /** Followers waiting for more bytes, the end or a failure. */
  private waiters: (() => void)[] = [];
  private rawBytes = 0;
  private maxBytes: number;
  private failed: string | undefined;
  private readonly removeDir: () => void;
  private fdOpen = true;
  /** Zero blocks seen and not decided yet: left out or written as zeros once the run ends. */
  private pendingZero: { offset: number; length: number } | undefined;
  private readonly skipped: { offset: number; length: number }[] = [];

  /**
   * Start one, or say why not (no room on this side's disk). `maxSkipped`: the most zero runs left
   * out (tests use a small one). `margin`: free space left on `base` (a local flash spools into its
   * work dir on the board's tmpfs, where maxBytes already keeps the ramfs margin: 0 there).
   */
  static start(encoder: readonly string[], maxBytes: number, base = tmpdir(), maxSkipped = MAX_SKIPPED, margin = DISK_MARGIN): Spool | string {
    let free: number;
    try {
      const s = statfsSync(base);
      free = s.bavail * s.bsize;
    } catch (e) {
      return `cannot read the free space of ${base}: ${(e as Error).message}`;
    }
    const room = Math.min(maxBytes, free - margin);
    if (room <= 0) return `${base} has too little free space`;
    return new Spool(encoder, room, base, maxSkipped);
  }

  private constructor(
    encoder: readonly string[],
    maxBytes: number,
    base: string,
    private readonly maxSkipped: number,
  ) {
    this.maxBytes = maxBytes;
    const scratch = privateTempDir("copy", base);
    this.removeDir = scratch.remove;
    this.path = join(scratch.dir, "image.lzo");
    this.fd = openSync(this.path, "wx", 0o600);
    const [file, ...args] = encoder;
    this.child = spawn(file!, args, { stdio: ["pipe", "pipe", "ignore"] });
    this.child.stdin!.on("error", () => {});
    this.child.stdout!.on("data", (c: Buffer) => {
      if (this.failed) return;
      if (this.onDisk + c.length > this.maxBytes) return this.fail(`the copy outgrew ${this.maxBytes} bytes`);
      this.md5.update(c);
      try {
        for (let off = 0; off < c.length; ) off += writeSync(this.fd, c, off);
      } catch (e) {
        return this.fail(`writing ${this.path}: ${(e as Error).message}`);
      }
      this.onDisk += c.length;
      this.wake();
    });
    this.exited = new Promise((resolve) => {
      this.child.on("error", (e) => {
        this.fail(`${file} could not run: ${e.message}`);
        resolve(null);
      });
      this.child.on("close", (code) => resolve(code));
    });
  }

  /** Why it gave up, if it did. */
  get problem(): string | undefined {
    return this.failed;
  }

  /** Lower the bound (the board's /dev/shm room, once known). */
  cap(bytes: number): void {
    this.maxBytes = Math.min(this.maxBytes, bytes);
    if (this.onDisk > this.maxBytes) this.fail(`the copy outgrew ${this.maxBytes} bytes`);
  }

  /**
   * The image's raw bytes [pos, pos + chunk.length), fed in order. The chunk is copied before this
   * returns (the image pass reuses its buffer); a promise means: wait for the encoder to drain.
   */
  feed(chunk: Uint8Array, pos: number): Promise<void> | undefined {
    if (this.failed) return;
    if (pos !== this.blockStart + this.fill) return void this.fail(`the image pass skipped from ${this.blockStart + this.fill} to ${pos}`);
    let off = 0;
    let wait: Promise<void> | undefined;
    while (off < chunk.length) {
      const take = Math.min(chunk.length - off, ZERO_BLOCK - this.fill);
      this.block.set(chunk.subarray(off, off + take), this.fill);
      this.fill += take;
      off += take;
      if (this.fill === ZERO_BLOCK) wait = this.flush() ?? wait;
    }
    return wait;
  }

  /** The image ended at `size` bytes: the last block, then the encoder's end. The file, or undefined (see problem). */
  async end(size: number): Promise<SpoolFile | undefined> {
    if (!this.failed && size !== this.blockStart + this.fill) this.fail(`the image pass ended at ${size}, the copy at ${this.blockStart + this.fill}`);
    if (!this.failed && this.fill > 0) await this.flush();
    if (!this.failed) await this.closeZeroRun();
    this.child.stdin!.end();
    // Once given up, its end is not waited for (a killed encoder's children may hold its output open).
    const code = this.failed ? undefined : await this.exited;
    if (!this.failed && code !== 0) this.fail(`the encoder exited with ${code}`);
    this.closeFile();
    if (this.failed) return undefined;
    this.complete = true;
    this.wake();
    return { path: this.path, bytes: this.onDisk, md5: this.md5.digest("hex"), rawBytes: this.rawBytes, transport: "lzo", zeroRuns: this.skipped };
  }

  /** Remove the file (idempotent); a pass still feeding it goes on without it. */
  remove(): void {
    this.fail("removed");
    this.closeFile();
    this.removeDir();
  }

  /**
   * The file's bytes as they are made, from the start: what sends the copy while the pass still
   * runs. Ends after the last byte once end() succeeded; throws when the spool gives up (or is
   * removed) or the signal aborts. Reads 4 MiB at a time from the file: memory stays constant.
   */
  async *follow(signal?: AbortSignal): AsyncGenerator<Buffer> {
    const fd = openSync(this.path, "r");
    const wakeOnAbort = () => this.wake();
    signal?.addEventListener("abort", wakeOnAbort);
    try {
      for (let pos = 0; ; ) {
        if (signal?.aborted) throw new Error("the copy's send was stopped");
        if (this.failed) throw new Error(`the copy made during the image check stopped: ${this.failed}`);
        const ready = this.onDisk - pos;
        if (ready > 0) {
          const buf = Buffer.allocUnsafe(Math.min(ready, FOLLOW_CHUNK));
          for (let off = 0; off < buf.length; ) {
            const n = readSync(fd, buf, off, buf.length - off, pos + off);
            if (n === 0) throw new Error(`${this.path} is shorter than what was written to it`);
            off += n;
          }
          pos += buf.length;
          this.collect(buf.length);
          yield buf;
        } else if (this.complete) return;
        else await new Promise<void>((resolve) => this.waiters.push(resolve));
      }
    } finally {
      signal?.removeEventListener("abort", wakeOnAbort);
      closeSync(fd);
    }
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private flush(): Promise<void> | undefined {
    const len = this.fill;
    const data = this.block.subarray(0, len);
    const start = this.blockStart;
    this.blockStart += len;
    this.fill = 0;
    // A zero block waits for its run's end, unless no run can be left out any more (it is data then).
    if (isZero(data) && skipThreshold(this.skipped.length, this.maxSkipped) !== Number.POSITIVE_INFINITY) {
      if (this.pendingZero) this.pendingZero.length += len;
      else this.pendingZero = { offset: start, length: len };
      return;
    }
    this.closeZeroRun();
    this.rawBytes += len;
    this.collect(len);
    // The encoder owns this buffer now; the next block gets a new one.
    const ok = this.child.stdin!.write(data);
    this.block = Buffer.allocUnsafe(ZERO_BLOCK);
    return ok ? undefined : this.drained();
  }

  /** The zero run before this point ends: left out (a "z" range) or given to the encoder as zeros. */
  private closeZeroRun(): Promise<void> | undefined {
    const run = this.pendingZero;
    this.pendingZero = undefined;
    if (!run) return;
    if (run.length >= skipThreshold(this.skipped.length, this.maxSkipped)) {
      this.skipped.push(run);
      return;
    }
    // Kept: written as data. Shorter than the threshold, so at most 63 blocks; the shared zero block
    // is never changed, so it is queued as is, and the caller's next write waits for the drain.
    let ok = true;
    for (let left = run.length; left > 0; left -= ZERO_BLOCK) ok = this.child.stdin!.write(ZERO.subarray(0, Math.min(left, ZERO_BLOCK)));
    this.rawBytes += run.length;
    return ok ? undefined : this.drained();
  }

  private drained(): Promise<void> | undefined {
    if (this.ended()) return;
    return new Promise((resolve) => {
      const done = () => {
        this.child.stdin!.off("drain", done);
        this.child.off("exit", done);
        resolve();
      };
      this.child.stdin!.once("drain", done);
      this.child.once("exit", done);
    });
  }

  private fail(why: string): void {
    if (this.failed) return;
    this.failed = why;
    if (!this.ended()) this.child.kill();
    this.wake();
  }

  private closeFile(): void {
    if (this.fdOpen) closeSync(this.fd);
    this.fdOpen = false;
  }

  /** The encoder has exited: nothing will drain its input. */
  private ended(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }
}

const FOLLOW_CHUNK = 4 << 20;
const ZERO = new Uint8Array(ZERO_BLOCK);
function isZero(b: Uint8Array): boolean {
  return Buffer.compare(b, ZERO.subarray(0, b.length)) === 0;
}
