import { basename } from "node:path";

/**
 * The flash record (issue 5): one 512-byte text file on the new image's boot partition, saying what
 * was written, from where, and what the read-back found. The sending side adds a placeholder file to
 * the FAT patch (so the filesystem stays consistent and the file is readable on the booted board);
 * the helper overwrites that one sector after the verify, before the reboot; after the reboot the
 * sending side reads it back and checks its flash-id, which proves the board booted the disk it wrote.
 */
export const RECORD_FILE = "flash-live.txt";
export const RECORD_BYTES = 512;
/** Room left for the lines the helper appends. */
const HELPER_BYTES = 140;

/** What the sending side knows before the write. The helper appends verify, times and its clock. */
export interface RecordHead {
  flashId: string;
  version: string;
  image: string;
  imageSha256: string;
  imageBytes: number;
  writtenBytes: number;
  disk: string;
  mode: string;
  /** The codec on the wire. */
  sentAs: string;
  customized: string;
  from: string;
  started: Date;
}

/** The placeholder's text, padded with newlines to one sector: what the file says if the helper never got to write it. */
export function recordPlaceholder(flashId: string): Uint8Array {
  return pad(`# flash-live: this disk was written by flash-live, but the flash ended before it recorded its result\nflash-id=${flashId}\nverify=unknown\n`);
}

/** The lines the sending side fills in; the helper adds verify=, write-seconds=, verify-seconds=, finished=. */
export function recordHeadText(h: RecordHead): string {
  const lines = [
    `# flash-live ${clean(h.version, 16)}: flash record`,
    `flash-id=${h.flashId}`,
    `image=${clean(basename(h.image), 48)}`,
    `image-sha256=${h.imageSha256}`,
    `image-bytes=${h.imageBytes}`,
    ...(h.writtenBytes !== h.imageBytes ? [`written-bytes=${h.writtenBytes}`] : []),
    `disk=${clean(h.disk, 28)}`,
    `mode=${h.mode}, sent as ${h.sentAs}`,
    `customized=${h.customized}`,
    `from=${clean(h.from, 24)}`,
    `started=${h.started.toISOString().replace(/\.\d+Z$/, "Z")}`,
  ];
  const text = `${lines.join("\n")}\n`;
  // The helper's lines (verify=, bad-ranges=, write-seconds=, verify-seconds=, finished=) take at
  // most 140 bytes; the rest of the sector is newline padding.
  if (Buffer.byteLength(text) > RECORD_BYTES - HELPER_BYTES) throw new Error(`record head too long (${Buffer.byteLength(text)} bytes)`);
  return text;
}

/** key=value lines of a record (comments and padding skipped). */
export function parseRecord(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.replace(/\0+/g, "").split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const eq = line.indexOf("=");
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

/** The absolute disk offset of the placeholder's sector among the patch's extents, if it is there. */
export function locateRecord(extents: readonly { offset: number; data: Uint8Array }[], placeholder: Uint8Array): number | undefined {
  for (const e of extents) {
    for (let p = 0; p + RECORD_BYTES <= e.data.length; p += RECORD_BYTES) {
      if (Buffer.compare(e.data.subarray(p, p + RECORD_BYTES), placeholder) === 0) return e.offset + p;
    }
  }
  return undefined;
}

/** One sector of newlines, for the helper to pad the record with. */
export function recordPadding(): Uint8Array {
  return new Uint8Array(RECORD_BYTES).fill(0x0a);
}

function pad(text: string): Uint8Array {
  const out = recordPadding();
  out.set(new TextEncoder().encode(text).subarray(0, RECORD_BYTES));
  return out;
}

/** One line, printable, bounded: a file name or host name cannot break the record's format. */
function clean(s: string, max: number): string {
  const one = s.replace(/[\x00-\x1f\x7f]/g, "?");
  const bytes = Buffer.from(one, "utf8");
  if (bytes.length <= max) return one;
  // Cut on a character boundary.
  return new TextDecoder().decode(bytes.subarray(0, max)).replace(/\uFFFD$/, "");
}
