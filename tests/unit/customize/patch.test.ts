import { afterAll, describe, expect, test } from "bun:test";
import { copyFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SparseBytes } from "../../../src/customize/bytes.ts";
import { applyBootFiles, applyPatch, diffSectors, encodePatch, MERGE_GAP_SECTORS, prepareBootPatch, SECTOR } from "../../../src/customize/patch.ts";
import { UserError } from "../../../src/errors.ts";
import { fsckClean, makeDiskImage, makeFatPartition, mdir, mtype, readBytes, RPI_CMDLINE, RPI_CONFIG_TXT, run, tempDir } from "./_images.ts";

const tmp = tempDir();
afterAll(tmp.cleanup);

const BASE_FILES = {
  "cmdline.txt": RPI_CMDLINE,
  "config.txt": RPI_CONFIG_TXT,
  "kernel8.img": new Uint8Array(3 << 20).fill(0x5a),
  "overlays/vc4-kms-v3d.dtbo": "dtbo",
  "overlays/README": "overlays\n",
};

const PAYLOAD = [
  { path: "user-data", data: "#cloud-config\nhostname: boat\n" },
  { path: "network-config", data: "network:\n  version: 2\n" },
  { path: "firstrun.sh", data: "#!/bin/sh\necho hi\n" },
  { path: "extra/dir/plugin-file.txt", data: new Uint8Array([1, 2, 3, 0, 255]) },
  { path: "Ünïcode name.txt", data: "ü\n" },
];

function writeTemp(name: string, bytes: Uint8Array): string {
  const p = join(tmp.dir, name);
  writeFileSync(p, bytes);
  return p;
}

describe("applyBootFiles (checked with mtools and fsck.fat)", () => {
  for (const fat of [32, 16, 12] as const) {
    test(`FAT${fat}: files written, cmdline.txt appended, fsck clean, input untouched`, async () => {
      const part = makeFatPartition(tmp.dir, { sizeMiB: fat === 12 ? 4 : fat === 16 ? 64 : 128, fat, files: fat === 12 ? { "cmdline.txt": RPI_CMDLINE } : BASE_FILES, name: `p${fat}.img` });
      const before = readBytes(part);
      const copy = before.slice();
      const after = await applyBootFiles(before, PAYLOAD, { cmdlineAppend: "systemd.run=/boot/firmware/firstrun.sh systemd.unit=kernel-command-line.target" });
      expect(Buffer.compare(before, copy)).toBe(0);
      const out = writeTemp(`p${fat}-after.img`, after);
      const fsck = fsckClean(out);
      expect(fsck.output).not.toContain("differ");
      expect(fsck.ok).toBe(true);
      const listing = mdir(out);
      for (const name of ["user-data", "network-config", "firstrun.sh", "cmdline.txt", "Ünïcode name.txt"]) expect(listing).toContain(`::/${name}`);
      expect(mtype(out, "user-data")).toBe("#cloud-config\nhostname: boat\n");
      expect(mtype(out, "network-config")).toBe("network:\n  version: 2\n");
      const bin = run(["sh", "-c", `mtype -i "$1" ::extra/dir/plugin-file.txt | od -An -tu1`, "sh", out]).stdout.trim().split(/\s+/).map(Number);
      expect(bin).toEqual([1, 2, 3, 0, 255]);
      expect(mtype(out, "cmdline.txt")).toBe(`${RPI_CMDLINE.trimEnd()} systemd.run=/boot/firmware/firstrun.sh systemd.unit=kernel-command-line.target\n`);
    }, 30_000);
  }

  test("replacing an existing file keeps the volume clean", async () => {
    const part = makeFatPartition(tmp.dir, { sizeMiB: 64, files: { ...BASE_FILES, "user-data": "#cloud-config\n# the image's own defaults, a bit longer than ours\n".repeat(200) }, name: "replace.img" });
    const after = await applyBootFiles(readBytes(part), [{ path: "USER-DATA", data: "#cloud-config\n{}\n" }]);
    const out = writeTemp("replace-after.img", after);
    expect(fsckClean(out).ok).toBe(true);
    // FAT names are case-insensitive: the existing entry is replaced, not duplicated.
    expect(mdir(out).match(/user-data/gi)?.length).toBe(1);
    expect(mtype(out, "user-data")).toBe("#cloud-config\n{}\n");
  });

  test("a partition without room refuses with a UserError", async () => {
    const part = makeFatPartition(tmp.dir, { sizeMiB: 4, fat: 12, files: { "cmdline.txt": "x\n" }, name: "small.img" });
    await expect(applyBootFiles(readBytes(part), [{ path: "big.bin", data: new Uint8Array(5 << 20) }])).rejects.toBeInstanceOf(UserError);
  });

  test("cmdline edit without a cmdline.txt is a UserError", async () => {
    const part = makeFatPartition(tmp.dir, { sizeMiB: 64, files: { "config.txt": "x\n" }, name: "nocmd.img" });
    await expect(applyBootFiles(readBytes(part), [], { cmdlineAppend: "a=b" })).rejects.toBeInstanceOf(UserError);
  });

  test("not a FAT file system: UserError", async () => {
    await expect(applyBootFiles(new Uint8Array(1 << 20), [])).rejects.toBeInstanceOf(UserError);
  });
});

describe("sector patch", () => {
  test("diffSectors + encodePatch, applied with dd, reproduce the edited disk exactly; prepareBootPatch agrees", async () => {
    const { path: disk, bootOffset } = makeDiskImage(tmp.dir, { table: "dos", sizeMiB: 200, bootSizeMiB: 128, files: BASE_FILES });
    const diskBytes = readBytes(disk);
    const part = diskBytes.subarray(bootOffset, bootOffset + 128 * 1024 * 1024);
    const edits = { cmdlineAppend: "cfg80211.ieee80211_regdom=FI systemd.run=/boot/firmware/firstrun.sh" };
    const after = await applyBootFiles(part, PAYLOAD, edits);
    const patch = diffSectors(part, after, bootOffset);

    // The patch is aligned, sorted, disjoint, and covers every changed sector.
    let prevEnd = 0;
    for (const e of patch.extents) {
      expect(e.offset % SECTOR).toBe(0);
      expect(e.data.length % SECTOR).toBe(0);
      expect(e.offset).toBeGreaterThanOrEqual(prevEnd);
      prevEnd = e.offset + e.data.length;
    }
    const expected = diskBytes.slice();
    expected.set(after, bootOffset);
    const check = diskBytes.slice();
    applyPatch(check, patch);
    expect(Buffer.compare(check, expected)).toBe(0);

    // The board side: plain dd, one call per index line.
    const { data, index } = encodePatch(patch);
    const dataFile = writeTemp("patch.bin", data);
    const target = join(tmp.dir, "target.img");
    copyFileSync(disk, target);
    for (const line of index.trim().split("\n")) {
      const [off, len, at] = line.split(" ").map(Number);
      run(["dd", `if=${dataFile}`, `of=${target}`, "bs=512", `skip=${at / 512}`, `seek=${off / 512}`, `count=${len / 512}`, "conv=notrunc", "status=none"]);
    }
    expect(Buffer.compare(readBytes(target), expected)).toBe(0);
    run(["sh", "-c", `dd if="$1" of="$2" bs=1M skip=$(( $3 / 1048576 )) count=128 status=none`, "sh", target, join(tmp.dir, "target-p1.img"), String(bootOffset)]);
    expect(fsckClean(join(tmp.dir, "target-p1.img")).ok).toBe(true);

    // The efficient path (overlay diff over a sparse copy) gives the same bytes at the same places.
    const sparse = new SparseBytes(part.length);
    for (let p = 0; p < part.length; p += 1 << 20) sparse.append(part.subarray(p, p + (1 << 20)));
    sparse.finish();
    expect(sparse.storedBytes).toBeLessThan(part.length / 4);
    const fast = await prepareBootPatch(sparse, PAYLOAD, edits, bootOffset);
    const viaFast = diskBytes.slice();
    applyPatch(viaFast, fast);
    // Timestamps in directory entries may tick between the two edits: compare all but those bytes.
    expect(fast.extents.map((e) => [e.offset, e.data.length])).toEqual(patch.extents.map((e) => [e.offset, e.data.length]));
    expect(countDiffs(viaFast, expected)).toBeLessThan(64);
  }, 60_000);

  test("extents merge across small gaps only", () => {
    const old = new Uint8Array(SECTOR * 200);
    const neu = old.slice();
    const touch = (s: number) => (neu[s * SECTOR + 7] = 1);
    touch(10);
    touch(10 + MERGE_GAP_SECTORS + 1); // gap of exactly MERGE_GAP_SECTORS: merged
    touch(100); // far: separate
    const p = diffSectors(old, neu, 4 << 20);
    expect(p.extents.map((e) => [e.offset, e.data.length])).toEqual([
      [(4 << 20) + 10 * SECTOR, (MERGE_GAP_SECTORS + 2) * SECTOR],
      [(4 << 20) + 100 * SECTOR, SECTOR],
    ]);
    expect(encodePatch(p).index).toBe(`${(4 << 20) + 10 * SECTOR} ${(MERGE_GAP_SECTORS + 2) * SECTOR} 0\n${(4 << 20) + 100 * SECTOR} ${SECTOR} ${(MERGE_GAP_SECTORS + 2) * SECTOR}\n`);
    expect(diffSectors(old, old.slice(), 0).extents).toEqual([]);
    expect(encodePatch({ extents: [] })).toEqual({ data: new Uint8Array(0), index: "" });
  });

  test("SparseBytes keeps non-zero chunks only and reads back exactly", () => {
    const src = new Uint8Array(1_000_000);
    src.fill(7, 70_000, 70_010);
    src.fill(9, 999_990);
    const s = new SparseBytes(src.length);
    for (let p = 0; p < src.length; p += 3333) s.append(src.subarray(p, p + 3333));
    s.finish();
    expect(s.storedBytes).toBe(2 * 65536);
    expect(Buffer.compare(s.read(0, src.length), src)).toBe(0);
    expect(Buffer.compare(s.read(69_999, 20), src.subarray(69_999, 70_019))).toBe(0);
  });
});

function countDiffs(a: Uint8Array, b: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}
