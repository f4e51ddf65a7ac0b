import type { FileHandle } from "node:fs/promises";
import { UserError } from "../errors.ts";

/**
 * Total uncompressed size of an .xz file, read from the index of each stream (walking backwards from
 * the end, as `xz --list` does). A file without a valid footer was cut short: say so now.
 * Format: https://tukaani.org/xz/xz-file-format.txt §2.1.2 (footer), §4 (index).
 */
export async function xzUncompressedSize(fh: FileHandle, fileSize: number, name: string): Promise<number> {
  const damaged = (why: string) =>
    new UserError(`${name} is not a complete .xz file (${why}); it was probably cut short while downloading.`, "Download the image again and check its checksum.");
  let end = fileSize;
  let total = 0;
  while (end > 0) {
    // Stream padding: zero bytes, a multiple of four.
    const tail = await readAt(fh, Math.max(0, end - 4), Math.min(4, end));
    if (tail.length === 4 && tail.every((b) => b === 0)) {
      end -= 4;
      continue;
    }
    if (end < 24) throw damaged("too short");
    const footer = await readAt(fh, end - 12, 12);
    if (footer[10] !== 0x59 || footer[11] !== 0x5a) throw damaged("no stream footer");
    const backwardSize = (new DataView(footer.buffer, footer.byteOffset).getUint32(4, true) + 1) * 4;
    const indexStart = end - 12 - backwardSize;
    if (indexStart < 12) throw damaged("bad index size");
    const index = await readAt(fh, indexStart, backwardSize);
    if (index[0] !== 0x00) throw damaged("bad index");
    let pos = 1;
    const mbi = () => {
      let v = 0;
      let mul = 1;
      for (let i = 0; i < 9; i++) {
        const b = index[pos++];
        if (b === undefined) throw damaged("bad index");
        v += (b & 0x7f) * mul;
        if ((b & 0x80) === 0) return v;
        mul *= 128;
      }
      throw damaged("bad index");
    };
    const records = mbi();
    let blocks = 0;
    for (let i = 0; i < records; i++) {
      const unpadded = mbi();
      total += mbi();
      blocks += Math.ceil(unpadded / 4) * 4;
    }
    end = indexStart - blocks - 12;
    if (end < 0) throw damaged("index does not match the file");
    const header = await readAt(fh, end, 6);
    if (!(header[0] === 0xfd && header[1] === 0x37 && header[2] === 0x7a && header[3] === 0x58 && header[4] === 0x5a && header[5] === 0x00)) {
      throw damaged("stream header not where the index says");
    }
  }
  return total;
}

async function readAt(fh: FileHandle, pos: number, len: number): Promise<Uint8Array> {
  const buf = new Uint8Array(len);
  const { bytesRead } = await fh.read(buf, 0, len, pos);
  return buf.subarray(0, bytesRead);
}
