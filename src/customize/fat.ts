import * as FatFs from "js-fatfs";
// Embedded so the compiled binary carries it (FIELD-NOTES §3): js-fatfs would otherwise look for
// fatfs.wasm next to its own .js file, which does not exist inside `bun build --compile` output.
import fatfsWasmPath from "js-fatfs/dist/fatfs.wasm" with { type: "file" };
import { UserError } from "../errors.ts";
import { asByteSource, type BootBytes, type ByteSource } from "./bytes.ts";

export type FatType = "FAT12" | "FAT16" | "FAT32";

export interface FatBootSector {
  fatType: FatType;
  bytesPerSector: number;
  sectorsPerCluster: number;
  totalSectors: number;
  /** Volume label from the boot sector, trimmed; undefined for "NO NAME". */
  label?: string;
}

/**
 * Parse a FAT volume boot sector, or undefined when `sector` is not one. The FAT type is decided by
 * cluster count, as the FAT specification says (the "FAT32   " string is only informational).
 */
export function parseFatBootSector(sector: Uint8Array): FatBootSector | undefined {
  if (sector.length < 512) return undefined;
  const dv = new DataView(sector.buffer, sector.byteOffset, 512);
  if (dv.getUint16(510, true) !== 0xaa55) return undefined;
  if (sector[0] !== 0xeb && sector[0] !== 0xe9) return undefined;
  const bps = dv.getUint16(11, true);
  const spc = sector[13];
  const rsvd = dv.getUint16(14, true);
  const nfats = sector[16];
  const rootEnt = dv.getUint16(17, true);
  const tot16 = dv.getUint16(19, true);
  const fat16 = dv.getUint16(22, true);
  const tot32 = dv.getUint32(32, true);
  const fat32 = dv.getUint32(36, true);
  if (![512, 1024, 2048, 4096].includes(bps)) return undefined;
  if (spc === 0 || (spc & (spc - 1)) !== 0) return undefined;
  if (rsvd === 0 || nfats === 0) return undefined;
  const fatSz = fat16 !== 0 ? fat16 : fat32;
  const totalSectors = tot16 !== 0 ? tot16 : tot32;
  if (fatSz === 0 || totalSectors === 0) return undefined;
  const rootDirSectors = Math.ceil((rootEnt * 32) / bps);
  const dataSectors = totalSectors - (rsvd + nfats * fatSz + rootDirSectors);
  if (dataSectors <= 0) return undefined;
  const clusters = Math.floor(dataSectors / spc);
  const fatType: FatType = clusters < 4085 ? "FAT12" : clusters < 65525 ? "FAT16" : "FAT32";
  const labelAt = fatType === "FAT32" ? 0x47 : 0x2b;
  const sigAt = fatType === "FAT32" ? 0x42 : 0x26;
  let label: string | undefined;
  if (sector[sigAt] === 0x29) {
    label = new TextDecoder("latin1").decode(sector.subarray(labelAt, labelAt + 11)).trimEnd();
    if (label === "NO NAME" || label === "") label = undefined;
  }
  return { fatType, bytesPerSector: bps, sectorsPerCluster: spc, totalSectors, label };
}

export interface FatEntry {
  name: string;
  size: number;
  dir: boolean;
}

/**
 * A mounted FAT volume (ChaN's FatFs compiled to wasm, via js-fatfs) over bytes it never modifies:
 * every sector FatFs writes goes to an overlay, which `changedSectors()` returns. So the same
 * source can be inspected, edited and diffed without copying a 512 MiB partition.
 */
export class FatVolume {
  private readonly overlay = new Map<number, Uint8Array>();
  private ff!: FatFs.FatFs;
  private fatfs = 0;
  private mounted = false;

  private constructor(
    private readonly source: ByteSource,
    readonly boot: FatBootSector,
  ) {}

  static async open(bytes: BootBytes): Promise<FatVolume> {
    const source = asByteSource(bytes);
    const boot = parseFatBootSector(source.read(0, 512));
    if (!boot) throw new UserError("The boot partition does not hold a FAT file system.", "Use an image whose first partition is a FAT boot partition (as on Raspberry Pi OS).");
    const vol = new FatVolume(source, boot);
    await vol.mount();
    return vol;
  }

  private async mount(): Promise<void> {
    const ss = this.boot.bytesPerSector;
    const sectors = Math.floor(this.source.size / ss);
    const overlay = this.overlay;
    const source = this.source;
    this.ff = await FatFs.create({
      wasmBinary: await loadWasm(),
      diskio: {
        initialize: () => 0,
        status: () => 0,
        read: (ff, _pdrv, buff, sector, count) => {
          for (let i = 0; i < count; i++) {
            const s = sector + i;
            ff.HEAPU8.set(overlay.get(s) ?? source.read(s * ss, ss), buff + i * ss);
          }
          return FatFs.RES_OK;
        },
        write: (ff, _pdrv, buff, sector, count) => {
          for (let i = 0; i < count; i++) overlay.set(sector + i, ff.HEAPU8.slice(buff + i * ss, buff + (i + 1) * ss));
          return FatFs.RES_OK;
        },
        ioctl: (ff, _pdrv, cmd, buff) => {
          if (cmd === FatFs.CTRL_SYNC) return FatFs.RES_OK;
          if (cmd === FatFs.GET_SECTOR_COUNT) ff.setValue(buff, sectors, "i32");
          else if (cmd === FatFs.GET_SECTOR_SIZE) ff.setValue(buff, ss, "i16");
          else if (cmd === FatFs.GET_BLOCK_SIZE) ff.setValue(buff, 1, "i32");
          else return FatFs.RES_PARERR;
          return FatFs.RES_OK;
        },
      },
    } as FatFs.FatFsOptions);
    this.fatfs = this.ff.malloc(FatFs.sizeof_FATFS);
    check(this.ff.f_mount(this.fatfs, "", 1), "mount");
    this.mounted = true;
  }

  list(dir = "/"): FatEntry[] {
    const ff = this.ff;
    const dp = ff.malloc(FatFs.sizeof_DIR);
    const fno = ff.malloc(FatFs.sizeof_FILINFO);
    try {
      const r = ff.f_opendir(dp, dir);
      if (r === FatFs.FR_NO_PATH || r === FatFs.FR_NO_FILE) return [];
      check(r, `opendir ${dir}`);
      const out: FatEntry[] = [];
      for (;;) {
        check(ff.f_readdir(dp, fno), `readdir ${dir}`);
        const name = ff.FILINFO_fname(fno);
        if (name === "") break;
        out.push({ name, size: ff.FILINFO_fsize(fno), dir: (ff.FILINFO_fattrib(fno) & FatFs.AM_DIR) !== 0 });
      }
      ff.f_closedir(dp);
      return out;
    } finally {
      ff.free(fno);
      ff.free(dp);
    }
  }

  /** The file's bytes, or undefined when it does not exist. Names match case-insensitively, as FAT does. */
  readFile(path: string): Uint8Array | undefined {
    const ff = this.ff;
    const fp = ff.malloc(FatFs.sizeof_FIL);
    try {
      const r = ff.f_open(fp, path, FatFs.FA_READ);
      if (r === FatFs.FR_NO_FILE || r === FatFs.FR_NO_PATH || r === FatFs.FR_INVALID_NAME) return undefined;
      check(r, `open ${path}`);
      const size = ff.f_size(fp);
      const buf = ff.malloc(Math.max(size, 1));
      const br = ff.malloc(4);
      try {
        check(ff.f_read(fp, buf, size, br), `read ${path}`);
        return ff.HEAPU8.slice(buf, buf + ff.getValue(br, "i32"));
      } finally {
        ff.free(br);
        ff.free(buf);
        ff.f_close(fp);
      }
    } finally {
      ff.free(fp);
    }
  }

  readText(path: string): string | undefined {
    const b = this.readFile(path);
    return b && new TextDecoder().decode(b);
  }

  /** Create or replace a file; parent directories are created. */
  writeFile(path: string, data: Uint8Array | string): void {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    const parts = path.split("/").filter(Boolean);
    for (let i = 1; i < parts.length; i++) {
      const r = this.ff.f_mkdir(parts.slice(0, i).join("/"));
      if (r !== FatFs.FR_EXIST) check(r, `mkdir ${parts.slice(0, i).join("/")}`);
    }
    const ff = this.ff;
    const fp = ff.malloc(FatFs.sizeof_FIL);
    const buf = ff.malloc(Math.max(bytes.length, 1));
    const bw = ff.malloc(4);
    try {
      check(ff.f_open(fp, parts.join("/"), FatFs.FA_WRITE | FatFs.FA_CREATE_ALWAYS), `create ${path}`);
      ff.HEAPU8.set(bytes, buf);
      const r = ff.f_write(fp, buf, bytes.length, bw);
      const written = ff.getValue(bw, "i32");
      check(ff.f_close(fp), `close ${path}`);
      check(r, `write ${path}`);
      if (written !== bytes.length) {
        throw new UserError(
          `The image's boot partition has no room for ${path} (${bytes.length} bytes).`,
          "Free space on the image's boot partition, or customize less (e.g. without keep-host-keys).",
        );
      }
    } finally {
      ff.free(bw);
      ff.free(buf);
      ff.free(fp);
    }
  }

  /** Flush FatFs (FSInfo, directory entries) and stop; the overlay then holds every change. */
  unmount(): void {
    if (!this.mounted) return;
    check(this.ff.f_unmount(""), "unmount");
    this.ff.free(this.fatfs);
    this.mounted = false;
  }

  /**
   * Sectors FatFs wrote whose content differs from the source, by byte offset in the partition.
   * Call after unmount().
   */
  changedSectors(): Map<number, Uint8Array> {
    const ss = this.boot.bytesPerSector;
    const out = new Map<number, Uint8Array>();
    for (const [s, data] of [...this.overlay].sort((a, b) => a[0] - b[0])) {
      if (Buffer.compare(data, this.source.read(s * ss, ss)) !== 0) out.set(s * ss, data);
    }
    return out;
  }
}

// --- internal ---

const FR_NAMES = [
  "FR_OK", "FR_DISK_ERR", "FR_INT_ERR", "FR_NOT_READY", "FR_NO_FILE", "FR_NO_PATH", "FR_INVALID_NAME",
  "FR_DENIED", "FR_EXIST", "FR_INVALID_OBJECT", "FR_WRITE_PROTECTED", "FR_INVALID_DRIVE", "FR_NOT_ENABLED",
  "FR_NO_FILESYSTEM", "FR_MKFS_ABORTED", "FR_TIMEOUT", "FR_LOCKED", "FR_NOT_ENOUGH_CORE",
  "FR_TOO_MANY_OPEN_FILES", "FR_INVALID_PARAMETER",
];

function check(r: number, what: string): void {
  if (r === FatFs.FR_OK) return;
  if (r === FatFs.FR_DENIED && what.startsWith("create")) {
    throw new UserError(`The image's boot partition is full or read-only (${what}).`, "Free space on the image's boot partition.");
  }
  if (r === FatFs.FR_NO_FILESYSTEM || r === FatFs.FR_DISK_ERR) {
    throw new UserError(`The image's boot partition is not a readable FAT file system (${what}: ${FR_NAMES[r]}).`, "Check the image with fsck.fat.");
  }
  throw new Error(`FatFs ${what}: ${FR_NAMES[r] ?? r}`);
}

let wasm: Promise<ArrayBuffer> | undefined;
function loadWasm(): Promise<ArrayBuffer> {
  wasm ??= Bun.file(fatfsWasmPath).arrayBuffer();
  return wasm;
}
