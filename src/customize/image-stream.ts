import { createReadStream } from "node:fs";
import { open } from "node:fs/promises";
import { Readable } from "node:stream";
import * as zlib from "node:zlib";
import { XzReadableStream } from "xz-decompress";

export type ImageFormat = "raw" | "gzip" | "xz" | "zstd";

/** The image's compression, by magic bytes (never by file name). */
export async function detectImageFormat(path: string): Promise<ImageFormat> {
  const fh = await open(path, "r");
  try {
    const magic = new Uint8Array(6);
    await fh.read(magic, 0, 6, 0);
    if (magic[0] === 0x1f && magic[1] === 0x8b) return "gzip";
    if ([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00].every((b, i) => magic[i] === b)) return "xz";
    if (magic[0] === 0x28 && magic[1] === 0xb5 && magic[2] === 0x2f && magic[3] === 0xfd) return "zstd";
    return "raw";
  } finally {
    await fh.close();
  }
}

/** The decompressed image as a stream, in constant memory (node:zlib for gzip/zstd, xz-decompress for xz; FIELD-NOTES §3). */
export async function openImageStream(path: string): Promise<{ format: ImageFormat; stream: Readable }> {
  const format = await detectImageFormat(path);
  const file = createReadStream(path, { highWaterMark: 1 << 20 });
  switch (format) {
    case "raw":
      return { format, stream: file };
    case "gzip":
      return { format, stream: file.pipe(zlib.createGunzip()) };
    case "zstd":
      return { format, stream: file.pipe(zstd().createZstdDecompress()) };
    case "xz":
      return { format, stream: Readable.fromWeb(new XzReadableStream(Readable.toWeb(file) as ReadableStream<Uint8Array>) as never) };
  }
}

/** node:zlib's zstd (Bun has it; the installed @types/node predates it). */
export function zstd(): { createZstdDecompress(): import("node:stream").Transform; createZstdCompress(): import("node:stream").Transform } {
  return zlib as never;
}
