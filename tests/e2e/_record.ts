/**
 * The flash record (issue 5) in e2e cases: the disk must hold the image, plus the boot partition
 * edit the CLI sent (dumped at FLASH_LIVE_TEST_PATCH_OUT), plus the record's sector as the board
 * wrote it after the verify. That sector is checked on its own first (this flash's id, the image's
 * sha256, the verify result), then taken as expected for the byte comparison.
 */
import { expect } from "bun:test";
import { readFileSync } from "node:fs";
import { parseRecord, RECORD_BYTES } from "../../src/core/record.ts";
import type { Board } from "../harness/board.ts";
import type { BoardImage } from "../harness/build-image.ts";
import { type Patch, readPatchDump } from "./_customize-checks.ts";

export interface FlashedSectors {
  /** What to apply to the image for compareDisk: the sent extents, then the record as written. */
  patches: Patch[];
  /** The sent extents back to back (the placeholder included). */
  bin: Buffer;
  record: Record<string, string>;
  recordOffset: number;
}

export async function flashedSectors(board: Board, img: BoardImage, prefix: string, verify: "ok" | "repaired" | "failed" | "skipped"): Promise<FlashedSectors> {
  const { patches, bin } = readPatchDump(prefix);
  const [off, flashId] = readFileSync(`${prefix}.record`, "utf8").trim().split(" ");
  const recordOffset = Number(off);
  const boot = img.partitions[0]!;
  expect(recordOffset % 512).toBe(0);
  expect(recordOffset).toBeGreaterThanOrEqual(boot.start);
  expect(recordOffset + RECORD_BYTES).toBeLessThanOrEqual(boot.start + boot.size);
  const sector = Buffer.from(await board.readDisk(recordOffset, RECORD_BYTES));
  const record = parseRecord(sector.toString("utf8"));
  if (record["flash-id"] !== flashId) console.error(`record sector at ${recordOffset}:\n${JSON.stringify(sector.toString("latin1"))}`);
  expect(record).toMatchObject({ "flash-id": flashId!, "image-sha256": img.sha256, "image-bytes": String(img.sizes.raw), verify });
  expect(Number(record["write-seconds"])).toBeGreaterThanOrEqual(0);
  // Padding is newlines: the file reads as text on the board.
  expect(sector.at(-1)).toBe(0x0a);
  return { patches: [...patches, { offset: recordOffset, data: sector }], bin, record, recordOffset };
}
