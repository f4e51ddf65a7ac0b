/**
 * Just enough of the .deb format to pull one file out of a Debian package without dpkg-deb
 * (which a non-Debian build host lacks): an `ar` archive whose `data.tar.{xz,zst,gz}` member holds
 * the file tree. Tested against dpkg-deb and GNU tar (tests/unit/assets/deb.test.ts).
 */
import { gunzipSync } from "node:zlib";
import { XzReadableStream } from "xz-decompress";

export interface ArMember {
  name: string;
  data: Uint8Array;
}

const AR_MAGIC = "!<arch>\n";
const decoder = new TextDecoder();

/** Members of a System V / GNU `ar` archive, the container format of a .deb. */
export function readAr(archive: Uint8Array): ArMember[] {
  if (decoder.decode(archive.subarray(0, 8)) !== AR_MAGIC) throw new Error("not an ar archive (bad magic)");
  const members: ArMember[] = [];
  let offset = 8;
  while (offset + 60 <= archive.length) {
    const header = decoder.decode(archive.subarray(offset, offset + 60));
    if (header.slice(58, 60) !== "`\n") throw new Error(`corrupt ar header at offset ${offset}`);
    // GNU ar ends short names with "/"; dpkg writes them space-padded without it.
    const name = header.slice(0, 16).trimEnd().replace(/\/$/, "");
    const size = Number.parseInt(header.slice(48, 58).trim(), 10);
    if (!Number.isSafeInteger(size) || size < 0) throw new Error(`corrupt ar member size at offset ${offset}`);
    const start = offset + 60;
    if (start + size > archive.length) throw new Error(`ar member ${name} is truncated`);
    members.push({ name, data: archive.subarray(start, start + size) });
    offset = start + size + (size % 2); // members are 2-byte aligned
  }
  return members;
}

export interface TarEntry {
  /** Path without a leading "./". */
  path: string;
  /** "0" regular file, "5" directory, "2" symlink, ... (POSIX typeflag; "\0" is normalised to "0"). */
  type: string;
  data: Uint8Array;
  linkName: string;
}

/** Entries of a ustar / GNU / pax tar stream (long names via GNU "L" and pax "path" records). */
export function readTar(tar: Uint8Array): TarEntry[] {
  const entries: TarEntry[] = [];
  let offset = 0;
  let longName: string | undefined;
  let paxPath: string | undefined;
  while (offset + 512 <= tar.length) {
    const header = tar.subarray(offset, offset + 512);
    if (header.every((byte) => byte === 0)) break; // end-of-archive marker
    const field = (start: number, length: number) => {
      const raw = header.subarray(start, start + length);
      const end = raw.indexOf(0);
      return decoder.decode(end === -1 ? raw : raw.subarray(0, end));
    };
    const size = tarNumber(header.subarray(124, 136));
    const type = field(156, 1) || "0";
    const data = tar.subarray(offset + 512, offset + 512 + size);
    if (data.length !== size) throw new Error("tar stream is truncated");
    offset += 512 + Math.ceil(size / 512) * 512;

    if (type === "L") {
      longName = decoder.decode(data).replace(/\0.*$/s, "");
      continue;
    }
    if (type === "x") {
      paxPath = paxRecords(decoder.decode(data)).get("path") ?? paxPath;
      continue;
    }
    if (type === "g") continue; // pax global header: nothing we use
    const prefix = decoder.decode(header.subarray(257, 263)).startsWith("ustar") ? field(345, 155) : "";
    const name = paxPath ?? longName ?? (prefix ? `${prefix}/${field(0, 100)}` : field(0, 100));
    entries.push({ path: name.replace(/^(\.\/)+/, ""), type, data, linkName: field(157, 100) });
    longName = undefined;
    paxPath = undefined;
  }
  return entries;
}

/** The bytes of one regular file from a .deb's data archive, or undefined when it has none of `paths`. */
export async function extractFromDeb(deb: Uint8Array, paths: string[]): Promise<Uint8Array | undefined> {
  const member = readAr(deb).find((m) => m.name.startsWith("data.tar"));
  if (!member) throw new Error("not a Debian package: no data.tar member");
  const tar = await decompressMember(member);
  const entries = readTar(tar);
  for (const path of paths.map((p) => p.replace(/^\/+/, ""))) {
    const entry = entries.find((e) => e.path === path && e.type === "0");
    if (entry) return entry.data;
  }
  return undefined;
}

// --- internal ---

async function decompressMember(member: ArMember): Promise<Uint8Array> {
  const suffix = member.name.slice("data.tar".length);
  switch (suffix) {
    case "":
      return member.data;
    case ".gz":
      return gunzipSync(member.data);
    case ".zst":
      return Bun.zstdDecompressSync(member.data);
    case ".xz":
      return new Uint8Array(await new Response(new XzReadableStream(new Blob([member.data]).stream())).arrayBuffer());
    default:
      throw new Error(`unsupported .deb data compression: ${member.name}`);
  }
}

/** Octal, NUL/space terminated; or base-256 (high bit of the first byte set) for sizes >= 8 GiB. */
function tarNumber(raw: Uint8Array): number {
  if (raw[0]! & 0x80) {
    let value = raw[0]! & 0x7f;
    for (const byte of raw.subarray(1)) value = value * 256 + byte;
    return value;
  }
  const text = decoder.decode(raw).replace(/[\0 ]+$/, "").trim();
  return text ? Number.parseInt(text, 8) : 0;
}

/** pax extended header: "LEN key=value\n" records. */
function paxRecords(text: string): Map<string, string> {
  const records = new Map<string, string>();
  let rest = text;
  while (rest.length > 0) {
    const space = rest.indexOf(" ");
    const length = Number.parseInt(rest.slice(0, space), 10);
    if (!(length > 0)) break;
    // LEN counts bytes, not UTF-16 units: measure the record in bytes.
    const bytes = new TextEncoder().encode(rest);
    const record = decoder.decode(bytes.subarray(space + 1, length - 1));
    const eq = record.indexOf("=");
    records.set(record.slice(0, eq), record.slice(eq + 1));
    rest = decoder.decode(bytes.subarray(length));
  }
  return records;
}
