/**
 * The flash record (issue 5): its placeholder goes into the boot partition through the same FAT edit
 * as the customization; the helper later overwrites that one sector. Checked with mtools and
 * fsck.fat on a disk made by sfdisk + mkfs.fat.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createFlashHooks } from "../../../src/core/hooks.ts";
import { prepareBootFor } from "../../../src/core/customize-step.ts";
import { locateRecord, parseRecord, RECORD_BYTES, RECORD_FILE, recordHeadText, recordPadding, recordPlaceholder } from "../../../src/core/record.ts";
import { openImage } from "../../../src/image/source.ts";
import { createFakeTarget } from "../../fakes/fake-target.ts";
import { makeDiskImage, run, tempDir } from "../customize/_images.ts";

const tmp = tempDir("fl-record-");
afterAll(() => tmp.cleanup());

const head = {
  flashId: "0123456789abcdef",
  version: "0.1.0",
  image: "/images/2026-11-19-raspios-trixie-arm64-lite.img.xz",
  imageSha256: "a".repeat(64),
  imageBytes: 2_831_155_200,
  writtenBytes: 2_831_155_200,
  disk: "/dev/mmcblk0",
  mode: "ramfs",
  sentAs: "xz",
  customized: "cloud-init",
  from: "devbox",
  started: new Date("2026-11-26T15:00:00.123Z"),
};

describe("record text", () => {
  test("the head names the image by its file name, leaves room for the helper's lines, and parses back", () => {
    // The longest names a head can carry still leave the helper its room.
    const text = recordHeadText({ ...head, image: `/i/${"x".repeat(200)}`, from: "h".repeat(100), disk: `/dev/disk/by-id/${"d".repeat(60)}`, writtenBytes: 1 });
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(RECORD_BYTES - 140);
    const r = parseRecord(`${text}verify=ok\nwrite-seconds=40\n${"\n".repeat(100)}`);
    expect(parseRecord(recordHeadText(head)).image).toBe("2026-11-19-raspios-trixie-arm64-lite.img.xz");
    expect(r).toMatchObject({ "flash-id": head.flashId, "written-bytes": "1", "image-sha256": head.imageSha256, started: "2026-11-26T15:00:00Z", verify: "ok" });
  });

  test("a file or host name cannot break a line, and long ones are cut on a character boundary", () => {
    const text = recordHeadText({ ...head, image: `/x/evil\nverify=ok\r${"ä".repeat(100)}.img`, from: "host\u0000name" });
    const r = parseRecord(text);
    expect(r.verify).toBeUndefined();
    expect(r.image!.startsWith("evil?verify=ok?")).toBe(true);
    expect(Buffer.byteLength(r.image!)).toBeLessThanOrEqual(48);
    expect(r.image).not.toContain("\uFFFD");
    expect(r.from).toBe("host?name");
  });

  test("placeholder: one sector, newline padded, says the result was not recorded", () => {
    const p = recordPlaceholder(head.flashId);
    expect(p.length).toBe(RECORD_BYTES);
    expect(parseRecord(new TextDecoder().decode(p))).toEqual({ "flash-id": head.flashId, verify: "unknown" });
    expect(p[RECORD_BYTES - 1]).toBe(0x0a);
  });
});

describe("the record on a real FAT boot partition", () => {
  const hooks = createFlashHooks();
  const ctx = { target: createFakeTarget(), hooks, warnings: [] };

  test("a plain flash (no config) still edits the FAT: the placeholder is a file, the helper's sector overwrite is what mtools reads", async () => {
    const disk = makeDiskImage(tmp.dir, { table: "dos", sizeMiB: 80, bootSizeMiB: 64, files: { "cmdline.txt": "console=tty1 root=PARTUUID=1-02\n", "config.txt": "arm_64bit=1\n" } });
    const image = await openImage(disk.path);
    const boot = await prepareBootFor(ctx as never, image, {}, undefined, { flashId: head.flashId });
    expect(boot?.customization).toBeUndefined();
    expect(boot?.noRecord).toBeUndefined();
    const offset = boot!.record!.offset;
    expect(offset % 512).toBe(0);
    expect(offset).toBeGreaterThan(disk.bootOffset);
    expect(locateRecord(boot!.extents, recordPlaceholder(head.flashId))).toBe(offset);

    // image + patch, as the helper writes it, then the record sector as the helper writes it last.
    const bytes = readFileSync(disk.path);
    for (const e of boot!.extents) bytes.set(e.data, e.offset);
    const rec = new Uint8Array(RECORD_BYTES).fill(0x0a);
    rec.set(new TextEncoder().encode(`${recordHeadText(head)}verify=ok\nwrite-seconds=3\nverify-seconds=1\n`));
    expect(Buffer.compare(Buffer.concat([Buffer.from(rec)]).subarray(RECORD_BYTES - 1), Buffer.from(recordPadding()).subarray(0, 1))).toBe(0);
    bytes.set(rec, offset);
    const out = join(tmp.dir, "flashed.img");
    writeFileSync(out, bytes);
    const part = `${out}@@${disk.bootOffset}`;
    const listed = run(["mdir", "-b", "-i", part, "::"]).stdout;
    expect(listed).toContain(`::/${RECORD_FILE}`);
    const got = run(["mtype", "-i", part, `::${RECORD_FILE}`]).stdout;
    expect(parseRecord(got)).toMatchObject({ "flash-id": head.flashId, verify: "ok", "image-sha256": head.imageSha256 });
    // Untouched files and a clean FAT: the edit is a normal file creation.
    expect(run(["mtype", "-i", part, "::cmdline.txt"]).stdout).toBe("console=tty1 root=PARTUUID=1-02\n");
    const bootOnly = join(tmp.dir, "boot.fat");
    writeFileSync(bootOnly, bytes.subarray(disk.bootOffset, disk.bootOffset + 64 * 1024 * 1024));
    const fsck = run(["fsck.fat", "-n", bootOnly], { ok: false });
    expect(fsck.code).toBe(0);
  });

  test("--no-record and no config: nothing but the image is written", async () => {
    const disk = makeDiskImage(tmp.dir, { table: "gpt", sizeMiB: 80, bootSizeMiB: 64 }, "gpt.img");
    expect(await prepareBootFor(ctx as never, await openImage(disk.path), {}, undefined, undefined)).toBeUndefined();
  });

  test("an image without a FAT boot partition: no record, said why, and the flash is not refused", async () => {
    const path = join(tmp.dir, "nofat.img");
    run(["truncate", "-s", "40M", path]);
    run(["sfdisk", "-q", path], { stdin: "label: dos\nstart=2048, type=83\n" });
    const boot = await prepareBootFor(ctx as never, await openImage(path), {}, undefined, { flashId: head.flashId });
    expect(boot).toEqual({ extents: [], noRecord: "the image has no FAT boot partition to hold it" });
  });

  test("a full FAT: no record, said why", async () => {
    const disk = makeDiskImage(tmp.dir, { table: "dos", sizeMiB: 80, bootSizeMiB: 33, files: {} }, "full.img");
    // Fill the FAT32 volume with one big file.
    const filler = join(tmp.dir, "filler");
    let n = 0;
    for (const size of [1 << 20, 64 << 10, 4 << 10, 512]) {
      run(["truncate", "-s", String(size), filler]);
      while (run(["mcopy", "-i", `${disk.path}@@${disk.bootOffset}`, filler, `::f${n++}`], { ok: false }).code === 0);
    }
    const boot = await prepareBootFor(ctx as never, await openImage(disk.path), {}, undefined, { flashId: head.flashId });
    expect(boot?.record).toBeUndefined();
    expect(boot?.noRecord).toBeTruthy();
  });
});
