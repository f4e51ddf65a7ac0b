import { closeSync, openSync, readFileSync, truncateSync, writeFileSync, writeSync } from "node:fs";

/**
 * A sparse image file of `size` bytes: holes everywhere except `data`, whose byte j of piece i is
 * byte(i, j). Returns the file's bytes.
 */
export function writeSparseImage(path: string, size: number, data: readonly { offset: number; length: number }[], byte: (i: number, j: number) => number): Buffer {
  writeFileSync(path, "");
  truncateSync(path, size);
  const fd = openSync(path, "r+");
  try {
    for (const [i, d] of data.entries()) {
      const b = Buffer.alloc(d.length);
      for (let j = 0; j < b.length; j++) b[j] = byte(i, j);
      writeSync(fd, b, 0, b.length, d.offset);
    }
  } finally {
    closeSync(fd);
  }
  return readFileSync(path);
}
