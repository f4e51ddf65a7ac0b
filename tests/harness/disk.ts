import { closeSync, openSync, readSync, rmSync, statSync } from "node:fs";
import { run } from "./_run.ts";

/**
 * Reading a board's disk from the host: raw files directly, qcow2 through `qemu-img convert`. Only ever
 * used on files under the board cache, and only while the board's QEMU is not running (held at a
 * reboot or stopped), so the bytes are what the guest wrote.
 */
export type DiskFormat = "raw" | "qcow2";

export interface Partition {
  /** 1-based, as in /dev/vda1. */
  number: number;
  /** Bytes from the start of the disk. */
  start: number;
  size: number;
  /** MBR type byte (hex, "c") or GPT type GUID (lower case). */
  type: string;
}

export async function diskSize(path: string, format: DiskFormat): Promise<number> {
  if (format === "raw") return statSync(path).size;
  const info = JSON.parse((await run(["qemu-img", "info", "-U", "--output=json", "-f", format, path])).stdout);
  return info["virtual-size"] as number;
}

/** Copy `length` bytes at `offset` of the disk into a new raw file. */
export async function extractRange(disk: string, format: DiskFormat, offset: number, length: number, out: string): Promise<void> {
  // The raw driver's offset/size window over the disk. (Not `qemu-img dd skip= count=`: QEMU 7.2
  // counts the skipped blocks in count, so any read not starting at 0 came back short or empty.)
  rmSync(out, { force: true });
  const opts = `driver=raw,offset=${offset},size=${length},file.driver=${format},file.file.driver=file,file.file.filename=${disk.replaceAll(",", ",,")}`;
  await run(["qemu-img", "convert", "-U", "-O", "raw", "--image-opts", opts, out]);
  const got = statSync(out).size;
  if (got !== length) throw new Error(`extractRange: ${out} holds ${got} bytes, expected ${length}`);
}

/** Read bytes from a disk (any offset and length; rounded to sectors internally). */
export async function readRange(disk: string, format: DiskFormat, offset: number, length: number, tmp: string): Promise<Uint8Array> {
  if (format === "raw") return readRaw(disk, offset, length);
  const start = Math.floor(offset / 512) * 512;
  const end = Math.ceil((offset + length) / 512) * 512;
  await extractRange(disk, format, start, end - start, tmp);
  try {
    return readRaw(tmp, offset - start, length);
  } finally {
    rmSync(tmp, { force: true });
  }
}

export function readRaw(path: string, offset: number, length: number): Uint8Array {
  const buf = Buffer.alloc(length);
  const fd = openSync(path, "r");
  try {
    let got = 0;
    while (got < length) {
      const n = readSync(fd, buf, got, length - got, offset + got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

/**
 * Partitions from the first sectors of a disk (MBR primary entries, or GPT when the MBR is
 * protective). `head` must hold at least the first 34 sectors. Checked against sfdisk in
 * tests/e2e/harness.test.ts.
 */
export function parsePartitionTable(head: Uint8Array): Partition[] {
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (head.length < 512 || view.getUint16(510, true) !== 0xaa55) return [];
  const mbr: Partition[] = [];
  for (let i = 0; i < 4; i++) {
    const e = 446 + i * 16;
    const type = head[e + 4]!;
    const start = view.getUint32(e + 8, true);
    const sectors = view.getUint32(e + 12, true);
    if (type !== 0 && sectors !== 0) mbr.push({ number: i + 1, start: start * 512, size: sectors * 512, type: type.toString(16) });
  }
  if (mbr[0]?.type !== "ee") return mbr;

  // GPT header at LBA 1.
  const sig = new TextDecoder().decode(head.subarray(512, 520));
  if (sig !== "EFI PART") throw new Error("protective MBR without a GPT header");
  const entriesLba = Number(view.getBigUint64(512 + 72, true));
  const count = view.getUint32(512 + 80, true);
  const entrySize = view.getUint32(512 + 84, true);
  const out: Partition[] = [];
  for (let i = 0; i < count; i++) {
    const e = entriesLba * 512 + i * entrySize;
    if (e + entrySize > head.length) throw new Error(`GPT entries beyond the ${head.length} bytes read`);
    const typeGuid = guidAt(head, e);
    if (typeGuid === "00000000-0000-0000-0000-000000000000") continue;
    const first = Number(view.getBigUint64(e + 32, true));
    const last = Number(view.getBigUint64(e + 40, true));
    out.push({ number: i + 1, start: first * 512, size: (last - first + 1) * 512, type: typeGuid });
  }
  return out;
}

function guidAt(b: Uint8Array, o: number): string {
  const hex = (from: number, to: number, reverse: boolean) => {
    const bytes = Array.from(b.subarray(o + from, o + to));
    if (reverse) bytes.reverse();
    return bytes.map((x) => x.toString(16).padStart(2, "0")).join("");
  };
  return `${hex(0, 4, true)}-${hex(4, 6, true)}-${hex(6, 8, true)}-${hex(8, 10, false)}-${hex(10, 16, false)}`;
}
