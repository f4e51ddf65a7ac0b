import { createHash } from "node:crypto";
import { closeSync, openSync, readdirSync, readSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { run } from "./_run.ts";

/**
 * The disk of a board image, laid out like Raspberry Pi OS: partition 1 FAT32 `bootfs` at 4 MiB,
 * partition 2 ext4 `rootfs` after it to the end. No loop mounts (this machine's kernel has no vfat):
 * mkfs.vfat -C + mtools for the FAT, `mkfs.ext4 -d` straight into the image file at the partition's
 * offset. (Its .xz/.gz/.zst forms are made on first use: compress.ts.) Shared by the x86
 * (build-image.ts) and arm64 (build-arm64.ts) builders; its text is part of both cache keys.
 * (disk.ts reads a board's disk.)
 */
/** This file, hashed into the cache key of every image it assembles. */
export const ASSEMBLE_DISK = import.meta.path;

export interface DiskSpec {
  /** The image file to create. */
  raw: string;
  diskMiB: number;
  bootMiB: number;
  table: "dos" | "gpt";
  /** Files for the FAT partition, and the root tree for ext4 (both removed once they are in). */
  bootDir: string;
  rootDir: string;
  /** Scratch space for the FAT image. */
  tmp: string;
  ids: DiskIds;
}

export interface BuiltDisk {
  /** Partition offsets and sizes in bytes. */
  partitions: { start: number; size: number }[];
  sizes: { raw: number };
  sha256: string;
}

export async function assembleDisk(d: DiskSpec): Promise<BuiltDisk> {
  const MiB = 1024 * 1024;
  const { ids } = d;
  await run(["truncate", "-s", String(d.diskMiB * MiB), d.raw]);
  const bootStart = 8192; // sectors: 4 MiB, as Raspberry Pi OS
  const bootSectors = d.bootMiB * 2048;
  const script = d.table === "dos"
    ? [
      "label: dos", `label-id: 0x${ids.diskId}`, "unit: sectors",
      `start=${bootStart}, size=${bootSectors}, type=c`,
      `start=${bootStart + bootSectors}, type=83`,
    ]
    : [
      "label: gpt", `label-id: ${ids.diskGuid}`, "unit: sectors",
      `start=${bootStart}, size=${bootSectors}, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, uuid=${ids.bootGuid}, name="bootfs"`,
      `start=${bootStart + bootSectors}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=${ids.rootGuid}, name="rootfs"`,
    ];
  await run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", d.raw], { stdin: `${script.join("\n")}\n` });
  const table = JSON.parse((await run(["sfdisk", "-J", d.raw])).stdout).partitiontable as { partitions: { start: number; size: number }[] };
  const partitions = table.partitions.map((p) => ({ start: p.start * 512, size: p.size * 512 }));
  const [bootPart, rootPart] = partitions as [{ start: number; size: number }, { start: number; size: number }];

  const fat = join(d.tmp, "bootfs.fat");
  await run(["mkfs.vfat", "-F", "32", "-n", "bootfs", "-i", ids.fatVolumeId, "-C", fat, String(bootPart.size / 1024)]);
  await run(["mcopy", "-i", fat, "-o", ...readdirSync(d.bootDir).sort().map((f) => join(d.bootDir, f)), "::/"]);
  copyInto(fat, d.raw, bootPart.start);
  await run([
    "mkfs.ext4", "-q", "-F", "-L", "rootfs", "-U", ids.rootFsUuid, "-E", `offset=${rootPart.start},hash_seed=${ids.hashSeed}`,
    "-d", d.rootDir, d.raw, `${rootPart.size / 1024}k`,
  ]);
  await run(["rm", "-rf", d.rootDir, d.bootDir, fat]);

  const sizes = { raw: statSync(d.raw).size };
  return { partitions, sizes, sha256: await sha256File(d.raw) };
}

export type DiskIds = ReturnType<typeof idsFor>;

/** Per-image identifiers derived from the name: stable across rebuilds, different between images. */
export function idsFor(name: string) {
  const hex = (label: string) => createHash("sha256").update(`flash-live-board:${name}:${label}`).digest("hex");
  const guid = (label: string) => {
    const h = hex(label);
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
  };
  return {
    diskId: hex("disk-id").slice(0, 8),
    diskGuid: guid("disk-guid"),
    bootGuid: guid("boot-guid"),
    rootGuid: guid("root-guid"),
    rootFsUuid: guid("rootfs-uuid"),
    hashSeed: guid("hash-seed"),
    fatVolumeId: hex("fat-volume-id").slice(0, 8),
    machineId: hex("machine-id").slice(0, 32),
  };
}

function copyInto(src: string, dst: string, offset: number): void {
  // The destination is a fresh sparse file: skipping all-zero chunks keeps it sparse.
  const chunk = Buffer.alloc(1024 * 1024);
  const zero = Buffer.alloc(chunk.length);
  const fin = openSync(src, "r");
  const fout = openSync(dst, "r+");
  try {
    for (let pos = 0; ; ) {
      const n = readSync(fin, chunk, 0, chunk.length, pos);
      if (n === 0) break;
      if (!(n === chunk.length && chunk.equals(zero))) writeSync(fout, chunk, 0, n, offset + pos);
      pos += n;
    }
  } finally {
    closeSync(fin);
    closeSync(fout);
  }
}

async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of Bun.file(path).stream()) h.update(chunk);
  return h.digest("hex");
}
