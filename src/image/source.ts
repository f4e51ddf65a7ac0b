import { createReadStream } from "node:fs";
import { open, stat } from "node:fs/promises";
import { PassThrough, Readable } from "node:stream";
import zlib from "node:zlib";
import { UserError } from "../errors.ts";
import { collector } from "../util/gc.ts";
import { xzUncompressedSize } from "./xz-index.ts";

/**
 * Image sources (STYLE.md "Streams compose"): the format is chosen by magic bytes, never by the file
 * name, and decompression is a wrapper around the file stream.
 */
export type ImageFormat = "raw" | "gzip" | "xz" | "zstd" | "bzip2";

export interface ImageInfo {
  path: string;
  format: ImageFormat;
  /** Size of the file as stored. */
  fileSize: number;
  /** Decompressed size when it is known without reading everything (raw, xz index); else undefined. */
  rawSizeHint?: number;
}

const MAGIC: [ImageFormat, number[]][] = [
  ["xz", [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ["gzip", [0x1f, 0x8b]],
  ["zstd", [0x28, 0xb5, 0x2f, 0xfd]],
  ["bzip2", [0x42, 0x5a, 0x68]],
];

export function detectFormat(head: Uint8Array): ImageFormat {
  for (const [format, magic] of MAGIC) {
    if (magic.every((b, i) => head[i] === b)) return format;
  }
  return "raw";
}

export async function openImage(path: string): Promise<ImageInfo> {
  let st;
  try {
    st = await stat(path);
  } catch (e: any) {
    if (e?.code === "ENOENT") throw new UserError(`Image not found: ${path}`, "Check the path; flash-live takes .img, .img.gz, .img.xz, .img.zst or .img.bz2 files.");
    if (e?.code === "EACCES") throw new UserError(`Image not readable: ${path} (permission denied)`, "Make it readable by this user, or run with the right permissions.");
    throw e;
  }
  if (!st.isFile()) throw new UserError(`Not a file: ${path}`, "Pass a disk image file (.img, .img.xz, ...).");
  if (st.size === 0) throw new UserError(`The image is empty: ${path}`);
  const fh = await open(path, "r");
  try {
    const head = new Uint8Array(8);
    await fh.read(head, 0, 8, 0);
    const format = detectFormat(head);
    const info: ImageInfo = { path, format, fileSize: st.size };
    if (format === "raw") {
      if (st.size % 512 !== 0) {
        throw new UserError(
          `${path} is not a disk image: its size (${st.size} bytes) is not a multiple of 512 and it is not gzip, xz, zstd or bzip2 compressed.`,
          "Pass the .img file (or its .gz/.xz/.zst/.bz2 archive) as downloaded.",
        );
      }
      info.rawSizeHint = st.size;
    } else if (format === "xz") {
      // The xz index at the end of the file gives the size, and a missing index is a truncated file:
      // caught here in milliseconds instead of after a long decompression.
      info.rawSizeHint = await xzUncompressedSize(fh, st.size, path);
    }
    return info;
  } finally {
    await fh.close();
  }
}

/** Which external decompressor to prefer when it exists (faster than the JS/wasm paths, other core). */
const EXTERNAL: Partial<Record<ImageFormat, string[]>> = {
  xz: ["xz", "-dc", "-T0"],
  zstd: ["zstd", "-dc"],
  bzip2: ["bzip2", "-dc"],
};

function which(cmd: string): boolean {
  return Bun.which(cmd) !== null;
}

/**
 * The decompressed bytes of an image as a Node stream. Errors (truncated or corrupt input) surface as
 * a stream 'error' with a UserError naming the file.
 */
export function rawStream(info: ImageInfo): Readable {
  const inner = rawStreamInner(info);
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  inner.on("error", (e) =>
    out.destroy(e instanceof UserError ? e : new UserError(`${info.path} is damaged: ${e.message}`, "Download the image again (and check its published checksum).")),
  );
  out.on("close", () => inner.destroy());
  inner.pipe(out);
  return out;
}

function rawStreamInner(info: ImageInfo): Readable {
  const file = () => createReadStream(info.path, { highWaterMark: 1 << 20 });
  switch (info.format) {
    case "raw":
      return file();
    case "gzip":
    case "zstd":
    case "bzip2":
    case "xz": {
      const ext = EXTERNAL[info.format];
      if (ext && which(ext[0])) {
        // The same decoder as the scan's (decoderChunks), as a byte stream; destroying it stops the decoder.
        return Readable.from(decoderChunks(info, ext, undefined, () => new Error("the image read was stopped")), { objectMode: false });
      }
      if (info.format === "gzip" || info.format === "zstd") {
        const z = info.format === "gzip" ? zlib.createGunzip({ chunkSize: 1 << 20 }) : (zlib as unknown as { createZstdDecompress(o: object): zlib.Gunzip }).createZstdDecompress({ chunkSize: 1 << 20 });
        const src = file();
        src.pipe(z);
        z.on("close", () => src.destroy());
        return z;
      }
      if (info.format === "xz") {
        const { XzReadableStream } = require("xz-decompress") as typeof import("xz-decompress");
        const web = new XzReadableStream(Readable.toWeb(file()) as ReadableStream<Uint8Array>);
        const out = Readable.fromWeb(web as any, { highWaterMark: 4 << 20 });
        return out;
      }
      throw new UserError(`${info.path} is bzip2-compressed and bzip2 is not installed here.`, "Install bzip2 (apt-get install bzip2) or decompress the image first.");
    }
  }
}

/**
 * The image's raw bytes in order. A raw file is read into one reused 1 MiB buffer: a chunk is valid
 * only until the next one is asked for, and whoever keeps bytes copies them. (A fresh buffer per MiB
 * left a 1 GiB scan's RSS swinging up to ~240 MB before the collector caught up.) A compressed image
 * comes from its decoder's stream. An abort stops either, with the signal's reason.
 */
export async function* rawChunks(info: ImageInfo, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  const reason = () => (signal?.reason instanceof Error ? signal.reason : new Error("the image scan was stopped"));
  if (info.format === "raw") {
    const fh = await open(info.path, "r");
    try {
      const buf = Buffer.allocUnsafe(1 << 20);
      for (;;) {
        if (signal?.aborted) throw reason();
        const { bytesRead } = await fh.read(buf, 0, buf.length, null);
        if (bytesRead === 0) return;
        yield buf.subarray(0, bytesRead);
      }
    } finally {
      await fh.close();
    }
  }
  const ext = EXTERNAL[info.format];
  if (ext && which(ext[0])) {
    yield* decoderChunks(info, ext, signal, reason);
    return;
  }
  const stream = rawStream(info);
  const stop = () => stream.destroy(reason());
  signal?.addEventListener("abort", stop, { once: true });
  try {
    // The decoder hands over a fresh buffer per chunk (src/util/gc.ts).
    const collect = collector(32 << 20);
    for await (const c of stream as AsyncIterable<Buffer>) {
      collect(c.length);
      yield c;
    }
  } finally {
    signal?.removeEventListener("abort", stop);
    stream.destroy();
  }
}

/**
 * The output of an external decoder (xz, zstd, bzip2) reading the file itself: Bun.spawn hands the
 * file to its stdin and its stdout to this side as a native stream (rawChunks directly, rawStream
 * wrapped). Through Node's child_process and two PassThroughs the scan's thread spent more CPU on it
 * (768 MiB of xz output: 3.75-3.85 s against 2.3-3.0 s, half of it in the kernel), on a core the
 * decoder needs too. The chunks end with an error unless the decoder exited 0: its output ends before
 * its exit status is known, and xz reports a damaged block (a CRC64 mismatch, bad LZMA data) by its
 * status after the output it could make, so ended there a damaged image would read as a shorter one.
 */
async function* decoderChunks(info: ImageInfo, cmd: string[], signal: AbortSignal | undefined, reason: () => Error): AsyncGenerator<Uint8Array> {
  signal?.throwIfAborted();
  const child = Bun.spawn(cmd, { stdin: Bun.file(info.path), stdout: "pipe", stderr: "pipe" });
  const stderr = new Response(child.stderr).text().catch(() => "");
  const reader = child.stdout.getReader();
  let stopped = false;
  const stop = () => {
    stopped = true;
    child.kill();
    reader.cancel().catch(() => {});
  };
  signal?.addEventListener("abort", stop, { once: true });
  const collect = collector(32 << 20);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (stopped) throw reason();
      if (done) break;
      collect(value.length);
      yield value;
    }
    const code = await child.exited;
    if (stopped) throw reason();
    if (code !== 0) {
      const why = (await stderr).trim() || `${cmd[0]} ${child.signalCode ? `was killed (${child.signalCode})` : `exited with ${code}`}`;
      throw new UserError(`${info.path} is damaged: ${why}`, "Download the image again (and check its published checksum).");
    }
  } finally {
    signal?.removeEventListener("abort", stop);
    // The consumer stopped early (or failed): stop the decoder too.
    if (child.exitCode === null) child.kill();
    reader.releaseLock();
  }
}

/** The first n decompressed bytes (fewer if the image is shorter). */
export async function readRawPrefix(info: ImageInfo, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  const s = rawStream(info);
  try {
    for await (const chunk of s as AsyncIterable<Buffer>) {
      const take = Math.min(chunk.length, n - got);
      out.set(chunk.subarray(0, take), got);
      got += take;
      if (got >= n) break;
    }
  } finally {
    s.destroy();
  }
  return got === n ? out : out.subarray(0, got);
}

export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`;
}
