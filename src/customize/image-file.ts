import { closeSync, createWriteStream, ftruncateSync, openSync, realpathSync, writeSync } from "node:fs";
import { homedir } from "node:os";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import zlib from "node:zlib";
import type { CustomizationConfig, CustomizeWith } from "../config/schema.ts";
import type { ConfOrigins } from "../config/seed-conf.ts";
import type { BootFile, PartitionProbe } from "../core/hooks.ts";
import { UserError } from "../errors.ts";
import { openImage, rawStream, type ImageFormat } from "../image/source.ts";
import { isZero, SparseBytes } from "./bytes.ts";
import type { HostKey } from "./host-keys.ts";
import { chooseMechanism, inspectBootPartition, refuseNoBootPartition, type BootDir, type BootInspection, type MechanismChoice } from "./inspect.ts";
import { IMAGE_HEAD_BYTES, locateBootPartition, type DiskLayout } from "./partitions.ts";
import { patchBytes, prepareBootPatch, type SectorPatch } from "./patch.ts";
import { buildPayloads } from "./payloads.ts";
import { resolveCustomization, type ResolvedCustomization } from "./resolve.ts";

export interface PreparedCustomization {
  layout: DiskLayout;
  inspection: BootInspection;
  choice: MechanismChoice;
  files: BootFile[];
  cmdlineAppend?: string;
  patch: SectorPatch;
}

export interface PrepareOptions {
  customizeWith?: CustomizeWith;
  bootDir?: BootDir;
  probes?: readonly PartitionProbe[];
  /** Lets the caller change the payload files (the `customize:payloads` hook). */
  onPayloads?: (files: BootFile[]) => void | Promise<void>;
  /** The board's SSH host keys (hostKeysFromFiles), when keep-host-keys is set. */
  hostKeys?: readonly HostKey[];
}

/**
 * Read only the start of a (decompressed) image stream, up to the end of its boot partition, and
 * compute the customization's sector patch. The stream is left unfinished: the caller destroys it.
 * Memory: the boot partition's non-zero 64 KiB chunks.
 */
export async function prepareFromImageStream(
  stream: AsyncIterable<Uint8Array>,
  resolved: ResolvedCustomization,
  opts: PrepareOptions = {},
): Promise<PreparedCustomization> {
  const edit = await prepareBootEdit(stream, resolved, opts);
  if (!edit) refuseNoBootPartition();
  return edit as PreparedCustomization;
}

/** A boot partition edit: the customization (when `resolved`), plus opts.extraFiles. */
export interface BootEdit extends Omit<PreparedCustomization, "choice"> {
  choice?: MechanismChoice;
}

/**
 * prepareFromImageStream, with the customization optional: the edit may hold only `extraFiles` (the
 * flash record). Undefined when the image has no FAT boot partition.
 */
export async function prepareBootEdit(
  stream: AsyncIterable<Uint8Array>,
  resolved: ResolvedCustomization | undefined,
  opts: PrepareOptions & { extraFiles?: readonly BootFile[] } = {},
): Promise<BootEdit | undefined> {
  const reader = byteReader(stream);
  const head = await reader.take(IMAGE_HEAD_BYTES);
  const layout = await locateBootPartition(head, { probes: opts.probes });
  const boot = layout.boot;
  if (!boot) return undefined;
  const part = new SparseBytes(boot.size);
  // The head may already hold the partition's start.
  if (boot.start < head.length) part.append(head.subarray(boot.start, Math.min(head.length, boot.start + boot.size)));
  else await reader.skip(boot.start - head.length);
  let have = Math.max(0, Math.min(head.length, boot.start + boot.size) - boot.start);
  while (have < boot.size) {
    const chunk = await reader.next(Math.min(1 << 20, boot.size - have));
    if (chunk.length === 0) throw new UserError("The image ends inside its boot partition.", "The image file is truncated: download it again.");
    part.append(chunk);
    have += chunk.length;
  }
  part.finish();
  const inspection = await inspectBootPartition(part);
  let files: BootFile[] = [];
  let cmdlineAppend: string | undefined;
  let choice: MechanismChoice | undefined;
  if (resolved) {
    choice = chooseMechanism(inspection, opts.customizeWith);
    const payloads = buildPayloads(resolved, { mechanism: choice.mechanism, inspection, hostKeys: opts.hostKeys, bootDir: opts.bootDir });
    await opts.onPayloads?.(payloads.files);
    files = payloads.files;
    cmdlineAppend = payloads.cmdlineAppend;
  }
  const all = [...files, ...(opts.extraFiles ?? [])];
  const patch = await prepareBootPatch(part, all, { cmdlineAppend }, boot.start);
  return { layout, inspection, choice, files, cmdlineAppend, patch };
}

export interface CustomizeImageFileOptions extends PrepareOptions {
  image: string;
  /** Output: raw unless the name ends in .gz or .zst. */
  out: string;
  config: CustomizationConfig;
  origin?: ConfOrigins;
  home?: string;
}

export interface CustomizeImageFileResult extends PreparedCustomization {
  inputFormat: ImageFormat;
  outputFormat: "raw" | "gzip" | "zstd";
  /** Decompressed image size. */
  imageBytes: number;
  /** describeCustomization's line. */
  summary: string;
}

/**
 * `flash-live customize`: write a customized copy of an image file (raw, .gz, .xz or .zst in;
 * raw, .gz or .zst out). Two passes over the input, constant memory: the first reads only up to
 * the end of the boot partition and computes the sector patch; the second copies the image with
 * the patch applied on the fly. A raw output is written sparse (zero blocks are skipped).
 */
export async function customizeImageFile(opts: CustomizeImageFileOptions): Promise<CustomizeImageFileResult> {
  const outputFormat = outputFormatOf(opts.out);
  if (samePath(opts.image, opts.out)) throw new UserError("The output would overwrite the image.", "Give another file name with -o.");
  const resolved = resolveCustomization(opts.config, { home: opts.home ?? homedir(), origin: opts.origin });
  if (!resolved) throw new UserError("The config sets nothing to customize.", "Set at least one key (see example.conf).", 2);

  const info = await openImage(opts.image);
  const first = rawStream(info);
  let prepared: PreparedCustomization;
  try {
    prepared = await prepareFromImageStream(first, resolved, opts);
  } finally {
    first.destroy();
  }

  const patcher = patchTransform(prepared.patch);
  let imageBytes: number;
  if (outputFormat === "raw") {
    imageBytes = await writeSparse(rawStream(info).pipe(patcher), opts.out);
  } else {
    const compressor =
      outputFormat === "gzip" ? zlib.createGzip({ level: 6 }) : (zlib as unknown as { createZstdCompress(): import("node:stream").Transform }).createZstdCompress();
    await pipeline(rawStream(info), patcher, compressor, createWriteStream(opts.out));
    imageBytes = patcher.bytesSeen;
  }
  if (prepared.patch.extents.some((e) => e.offset + e.data.length > imageBytes)) throw new Error("patch reaches past the end of the image");
  return { ...prepared, inputFormat: info.format, outputFormat, imageBytes, summary: describeCustomization(resolved, prepared) };
}

// --- internal ---

function outputFormatOf(out: string): "raw" | "gzip" | "zstd" {
  if (/\.gz$/i.test(out)) return "gzip";
  if (/\.zst$/i.test(out)) return "zstd";
  if (/\.(xz|bz2|lz4|zip)$/i.test(out)) {
    throw new UserError(`Cannot write ${out}: flash-live writes raw images, .gz and .zst.`, "Use -o NAME.img (then compress it yourself, e.g. xz -T0 NAME.img) or -o NAME.img.zst.");
  }
  return "raw";
}

function samePath(a: string, b: string): boolean {
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return false;
  }
}

/** Sequential reads of exact sizes from an async iterable of chunks. */
function byteReader(stream: AsyncIterable<Uint8Array>) {
  const it = stream[Symbol.asyncIterator]();
  let buf: Uint8Array = new Uint8Array(0);
  let done = false;
  async function fill(): Promise<boolean> {
    if (done) return false;
    const r = await it.next();
    if (r.done) {
      done = true;
      return false;
    }
    buf = buf.length ? concat(buf, r.value) : r.value;
    return true;
  }
  return {
    /** Up to `max` bytes (fewer only at the end). */
    async next(max: number): Promise<Uint8Array> {
      while (buf.length === 0) if (!(await fill())) return new Uint8Array(0);
      const out = buf.subarray(0, Math.min(max, buf.length));
      buf = buf.subarray(out.length);
      return out;
    },
    /** Exactly `n` bytes, or fewer at the end of the stream. */
    async take(n: number): Promise<Uint8Array> {
      const out = new Uint8Array(n);
      let at = 0;
      while (at < n) {
        const c = await this.next(n - at);
        if (c.length === 0) return out.subarray(0, at);
        out.set(c, at);
        at += c.length;
      }
      return out;
    },
    async skip(n: number): Promise<void> {
      while (n > 0) {
        const c = await this.next(Math.min(n, 1 << 20));
        if (c.length === 0) throw new UserError("The image ends before its boot partition.", "The image file is truncated: download it again.");
        n -= c.length;
      }
    },
  };
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Overwrites the patch's extents in a stream of disk bytes as they pass. */
function patchTransform(patch: SectorPatch): Transform & { bytesSeen: number } {
  let pos = 0;
  const t = new Transform({
    transform(chunk: Uint8Array, _enc, cb) {
      let out: Uint8Array = chunk;
      const end = pos + chunk.length;
      for (const e of patch.extents) {
        const a = Math.max(pos, e.offset);
        const b = Math.min(end, e.offset + e.data.length);
        if (a >= b) continue;
        if (out === chunk) out = Uint8Array.prototype.slice.call(chunk) as Uint8Array;
        out.set(e.data.subarray(a - e.offset, b - e.offset), a - pos);
      }
      pos = end;
      (t as Transform & { bytesSeen: number }).bytesSeen = pos;
      cb(null, out);
    },
  }) as Transform & { bytesSeen: number };
  t.bytesSeen = 0;
  return t;
}

async function writeSparse(stream: Readable, out: string): Promise<number> {
  const fd = openSync(out, "w", 0o644);
  let pos = 0;
  try {
    const BLOCK = 64 * 1024;
    for await (const chunk of stream as AsyncIterable<Uint8Array>) {
      for (let p = 0; p < chunk.length; p += BLOCK) {
        const part = chunk.subarray(p, Math.min(p + BLOCK, chunk.length));
        if (!isZero(part)) {
          let w = 0;
          while (w < part.length) w += writeSync(fd, part, w, part.length - w, pos + w);
        }
        pos += part.length;
      }
    }
    ftruncateSync(fd, pos);
  } finally {
    closeSync(fd);
  }
  return pos;
}

/** One line for the confirmation summary and logs: what will be set, how, and what it costs. No secrets. */
export function describeCustomization(r: ResolvedCustomization, prepared: Pick<PreparedCustomization, "choice" | "layout" | "patch">): string {
  const parts: string[] = [];
  if (r.hostname) parts.push(`hostname ${r.hostname}`);
  if (r.user) {
    const how = [r.user.passwordHash ? "password" : "", r.user.sshKeys.length ? `${r.user.sshKeys.length} key${r.user.sshKeys.length > 1 ? "s" : ""}` : ""].filter(Boolean).join(", ");
    parts.push(`user ${r.user.name} (${how})`);
  }
  if (r.sshPasswordAuth !== undefined) parts.push(`ssh password auth ${r.sshPasswordAuth ? "on" : "off"}`);
  if (r.wifi) parts.push(`Wi-Fi ${JSON.stringify(r.wifi.ssid)} (${r.wifiCountry})`);
  else if (r.wifiCountry) parts.push(`Wi-Fi country ${r.wifiCountry}`);
  if (r.timezone) parts.push(`timezone ${r.timezone}`);
  if (r.keyboardLayout) parts.push(`keyboard ${r.keyboardLayout}`);
  if (r.locale) parts.push(`locale ${r.locale}`);
  if (r.keepHostKeys) parts.push("host keys kept");
  const bytes = patchBytes(prepared.patch);
  const size = bytes < 1024 ? `${bytes} B` : `${(bytes / 1024).toFixed(1)} KiB`;
  const via = prepared.choice.mechanism === "firstrun" ? "firstrun.sh" : "cloud-init";
  return `${parts.join(", ")}; via ${via} on partition ${prepared.layout.boot?.index} (${size} in ${prepared.patch.extents.length} extents)`;
}
