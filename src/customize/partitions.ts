import { getPartitions } from "partitioninfo";
import type { PartitionProbe } from "../core/hooks.ts";
import { UserError } from "../errors.ts";
import { parseFatBootSector } from "./fat.ts";

export interface PartitionInfo {
  /** 1-based, as Linux numbers them (/dev/mmcblk0pN). */
  index: number;
  /** MBR: "0x0c"; GPT: the type GUID, uppercase. */
  type: string;
  /** Byte offset of the partition on the disk. */
  start: number;
  /** Bytes. */
  size: number;
  /** FAT by its type, and by its boot sector when that lies within the head given. */
  fat: boolean;
  /** GPT partition name, else the FAT volume label when readable from the head. */
  label?: string;
}

export interface DiskLayout {
  table: "mbr" | "gpt";
  partitions: PartitionInfo[];
  /** The FAT boot partition the customization goes to; undefined when there is none. */
  boot?: PartitionInfo;
  /** How `boot` was picked (or why none was). */
  bootReason: string;
}

/** How much of the image `locateBootPartition` wants: the table, and partition 1's boot sector on common layouts. */
export const IMAGE_HEAD_BYTES = 16 * 1024 * 1024;

/**
 * Read the partition table (MBR or GPT) from the first bytes of a decompressed image and find the
 * FAT boot partition: a plugin's probe first, else partition 1 when it is FAT, else the first FAT
 * partition. Give at least the first 1 MiB (IMAGE_HEAD_BYTES covers partition 1's boot sector on
 * Raspberry Pi OS layouts, where it starts at 4 or 8 MiB).
 */
export async function locateBootPartition(head: Uint8Array, opts: { probes?: readonly PartitionProbe[] } = {}): Promise<DiskLayout> {
  if (head.length < 512 || head[510] !== 0x55 || head[511] !== 0xaa) {
    throw new UserError("The image has no partition table (no MBR signature in its first sector).", "Give a whole-disk image (.img as written to an SD card), not a partition or an archive.");
  }
  // A FAT file system without a partition table ("superfloppy") also ends its first sector in 55 AA.
  if (parseFatBootSector(head.subarray(0, 512))) {
    throw new UserError("The image is a bare FAT file system, not a disk image with a partition table.", "Give a whole-disk image (.img as written to an SD card).");
  }
  let result: Awaited<ReturnType<typeof getPartitions>>;
  try {
    // Extended/logical partitions are left out: their tables may lie beyond the head, and a
    // bootable FAT partition on a Pi-like image is always primary.
    result = await getPartitions(Buffer.from(head.buffer, head.byteOffset, head.length), { getLogical: false, includeExtended: false });
  } catch (e) {
    throw new UserError(`The image's partition table cannot be read: ${(e as Error).message}`, "Check that the image is a whole-disk image and not damaged.");
  }
  const partitions: PartitionInfo[] = result.partitions.map((p) => {
    const type = typeof p.type === "number" ? `0x${p.type.toString(16).padStart(2, "0")}` : p.type.toUpperCase();
    let fat = result.type === "mbr" ? MBR_FAT_TYPES.has(p.type as number) : GPT_FAT_TYPES.has(type);
    let label = "name" in p && p.name ? p.name : undefined;
    if (p.offset + 512 <= head.length) {
      // The boot sector is evidence that overrides the type byte either way.
      const bs = parseFatBootSector(head.subarray(p.offset, p.offset + 512));
      fat = bs !== undefined;
      label ??= bs?.label;
    }
    return { index: p.index, type, start: p.offset, size: p.size, fat, label };
  });
  partitions.sort((a, b) => a.index - b.index);

  for (const probe of opts.probes ?? []) {
    const picked = probe.pick(partitions);
    if (picked === undefined) continue;
    const boot = partitions.find((p) => p.index === picked);
    if (!boot) throw new Error(`partition probe ${probe.name} picked partition ${picked}, which does not exist`);
    return { table: result.type, partitions, boot, bootReason: `picked by probe ${probe.name}` };
  }
  const first = partitions.find((p) => p.index === 1);
  if (first?.fat) return { table: result.type, partitions, boot: first, bootReason: "partition 1 is FAT" };
  const anyFat = partitions.find((p) => p.fat);
  if (anyFat) return { table: result.type, partitions, boot: anyFat, bootReason: `first FAT partition (${anyFat.index})` };
  return { table: result.type, partitions, bootReason: "no FAT partition" };
}

// --- internal ---

// FAT12/16/32 (CHS and LBA, plain and hidden) and the EFI system partition, which is FAT.
const MBR_FAT_TYPES = new Set([0x01, 0x04, 0x06, 0x0b, 0x0c, 0x0e, 0x11, 0x14, 0x16, 0x1b, 0x1c, 0x1e, 0xef]);
const GPT_FAT_TYPES = new Set([
  "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", // Microsoft basic data
  "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", // EFI system partition
]);
