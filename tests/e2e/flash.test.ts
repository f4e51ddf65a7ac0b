/**
 * issue 6: every flash mode on a booted QEMU board, run as a user runs flash-live (the CLI in a child
 * process, a HOME with ~/.ssh/config and known_hosts). Each case proves the result two ways: the
 * board's disk equals the image byte for byte (checked while the runner holds the board at its
 * reboot), and the board then boots the new image (new marker, new boot_id).
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { loadBmap } from "../../src/image/bmap.ts";
import { ensureImage } from "../harness/build-image.ts";
import { boardWithHome, cleanupHomes, flashAndProve, stopBoards } from "./_prove.ts";
import { flashedSectors } from "./_record.ts";

afterEach(stopBoards);
afterAll(cleanupHomes);

// Between the write and the read-back, the harness-only fault hook zeroes 1 MiB at 100 MiB.
const FAULT = '"$2" dd if=/dev/zero of="$1" bs=1M count=1 seek=100 conv=notrunc,fsync 2>/dev/null';

describe("remote", () => {
  test("ramfs, .img.xz, MBR, virtio; a range corrupted after the write is caught and rewritten from RAM", async () => {
    const { board, home } = await boardWithHome("L");
    const r = await flashAndProve({ board, home, image: "L2", file: "xz", args: ["--accept-new-host-key"], env: { FLASH_LIVE_TEST_FAULT: FAULT }, verify: "repaired" });
    const out = r.stdout + r.stderr;
    expect(out).toContain("read-back found bad ranges (offset+length in bytes): 67108864+67108864 (64.0 MiB at 64.0 MiB); rewriting them");
    expect(out).toContain("verified: every byte on /dev/vda matches the image (after rewriting bad ranges from RAM)");
    expect(out).toContain("the board is back");
  });

  test("stream, .img.xz decompressed on this side (--transport raw), NVMe", async () => {
    const { board, home } = await boardWithHome("L", "nvme");
    const r = await flashAndProve({ board, home, image: "L2", file: "xz", args: ["--stream", "--transport", "raw", "--accept-new-host-key"] });
    const out = r.stderr + r.stdout;
    expect(out).toContain("sent as    raw (decompressed on this side): asked for (--transport)");
    expect(out).toContain("verified: every byte");
    // Packed: the zero blocks (about half of L2) are not sent; the board writes them from /dev/zero.
    expect(out).toMatch(/packed     [\d.]+ MiB of the image's bytes travel; [\d.]+ MiB of zero blocks are written from the board's \/dev\/zero/);
    const sent = Number(/320 MiB written to \/dev\/nvme0n1, ([\d.]+) MiB sent/.exec(out)?.[1]);
    expect(sent).toBeGreaterThan(100);
    expect(sent).toBeLessThan(200);
  });

  test("ramfs, .img.zst (the board cannot decode zstd: lzop -1 made during the image check and sent meanwhile), GPT; packed, a corrupted range is rewritten from the packed copy", async () => {
    const { board, home } = await boardWithHome("L");
    const r = await flashAndProve({ board, home, image: "L-gpt", file: "zst", args: ["--accept-new-host-key"], env: { FLASH_LIVE_TEST_FAULT: FAULT }, verify: "repaired" });
    const out = r.stderr + r.stdout;
    // --yes: the copy went to the board while the image was checked, so no measurement (the stream
    // cases and `check` measure).
    expect(out).toMatch(/sent as    lzo \(lzop -1 made on this side during the image check: [\d.]+ MiB, [\d.]+ \S+ sent already\): not measured: it went to the board while the image was checked/);
    expect(out).toMatch(/sent [\d.]+ MiB(: [\d.]+ \S+ during the image check, the rest in \w+| during the image check)\n/);
    expect(out).not.toContain("by measurement");
    expect(out).toMatch(/packed     [\d.]+ MiB of the image's bytes travel; [\d.]+ MiB of zero blocks are written from the board's \/dev\/zero/);
    expect(out).toContain("checking the copy on the board: md5 of what arrived");
    // The bad 64 MiB range holds both sent data and zero blocks: both are rewritten.
    expect(out).toContain("read-back found bad ranges (offset+length in bytes): 67108864+67108864 (64.0 MiB at 64.0 MiB); rewriting them");
    expect(out).toContain("verified: every byte on /dev/vda matches the image (after rewriting bad ranges from RAM)");
  });

  test("stream, raw .img encoded as xz -1 on this side (--transport xz), GPT, virtio", async () => {
    const { board, home } = await boardWithHome("L");
    const r = await flashAndProve({ board, home, image: "L-gpt", file: "raw", args: ["--stream", "--transport", "xz", "--accept-new-host-key"] });
    const out = r.stderr + r.stdout;
    expect(out).toContain("sent as    xz (xz -1 made on this side): asked for (--transport)");
    expect(out).toMatch(/packed     [\d.]+ MiB of the image's bytes travel; [\d.]+ MiB of zero blocks are written from the board's \/dev\/zero/);
    // Fewer bytes than the packed data: xz on the wire (L-gpt's data compresses to under half).
    const m = /320 MiB written to \/dev\/vda, ([\d.]+) MiB sent/.exec(out);
    expect(Number(m?.[1])).toBeGreaterThan(10);
    expect(Number(m?.[1])).toBeLessThan(100);
  });
});

describe("block map (issue 5)", () => {
  test("ramfs, .img.xz with bmaptool's .bmap: only mapped ranges written and read back; a hole keeps old bytes; boots", async () => {
    const { board, home } = await boardWithHome("L");
    const img = await ensureImage("L2", "xz");
    // The image next to its map, as users get them: L2.img.xz + L2.img.bmap (bmaptool, the oracle).
    const dir = home.path("images");
    mkdirSync(dir);
    symlinkSync(img.xz, join(dir, "L2.img.xz"));
    const made = Bun.spawnSync(["bmaptool", "create", "-o", join(dir, "L2.img.bmap"), img.raw], { stderr: "pipe" });
    expect(made.exitCode).toBe(0);
    const bm = loadBmap(join(dir, "L2.img.bmap"));
    expect(bm.mappedBytes).toBeLessThan(img.sizes.raw * 0.8);
    // A MiB that the map leaves out (free space of L2's root): fill it on the board's disk with a
    // pattern before the flash; the flash must not touch it.
    const hole = findHole(bm.ranges, 1 << 20, bm.imageSize);
    await board.ssh(`dd if=/dev/urandom of=/dev/vda bs=1M seek=${hole / (1 << 20)} count=1 conv=fsync,notrunc 2>/dev/null`, { user: "root" });
    const pattern = (await board.ssh(`dd if=/dev/vda bs=1M skip=${hole / (1 << 20)} count=1 2>/dev/null | md5sum`, { user: "root" })).stdout.split(" ")[0];

    const before = await board.bootId();
    const t0 = performance.now();
    const dump = home.path("patch");
    const cli = home.run(["flash", "board", join(dir, "L2.img.xz"), "--yes", "--accept-new-host-key"], { env: { FLASH_LIVE_TEST_PATCH_OUT: dump } });
    await board.waitHeld(600_000);
    const held = (performance.now() - t0) / 1000;
    const { patches, record } = await flashedSectors(board, img, dump, "ok");
    expect(record["written-bytes"]).toBe(String(bm.mappedBytes));
    const disk = home.path("disk.raw");
    await board.exportDisk(disk, img.sizes.raw);
    const got = readFileSync(disk);
    const want = readFileSync(img.raw);
    for (const p of patches) want.set(p.data, p.offset);
    for (const r of bm.ranges) {
      if (!got.subarray(r.offset, r.offset + r.length).equals(want.subarray(r.offset, r.offset + r.length))) throw new Error(`mapped range ${r.offset}+${r.length} differs`);
    }
    expect(createHash("md5").update(got.subarray(hole, hole + (1 << 20))).digest("hex")).toBe(pattern!);
    expect(got.subarray(hole, hole + (1 << 20)).equals(want.subarray(hole, hole + (1 << 20)))).toBe(false);
    rmSync(disk);
    await board.resume();
    const r = await cli;
    const out = r.stdout + r.stderr;
    if (r.code !== 0) console.error(out);
    expect(r.code).toBe(0);
    expect(out).toContain(`bmap       ${join(dir, "L2.img.bmap")}`);
    expect(out).toContain("verified: every byte");
    expect(out).toMatch(/written to \/dev\/vda/);
    expect(out).toContain("(block map)");
    expect(await board.waitForReboot(before)).not.toBe(before);
    expect((await board.ssh("cat /etc/image-id")).stdout.trim()).toBe(img.marker);
    console.log(`[flash e2e] L2.xz + bmap (${bm.mappedBytes} of ${bm.imageSize} B mapped): flash to reset ${held.toFixed(1)} s; ${/done in [^\n]*/.exec(out)?.[0]}`);
  });
});

/** The first `size`-aligned run of `size` bytes that no range touches. */
function findHole(ranges: { offset: number; length: number }[], size: number, end: number): number {
  for (let at = end - size; at >= 0; at -= size) {
    if (!ranges.some((r) => r.offset < at + size && at < r.offset + r.length)) return at;
  }
  throw new Error("no hole in the block map");
}

describe("verification", () => {
  test("stream: the SSH session dies after the write; the helper still verifies and reboots, the verdict comes from the record", async () => {
    const { board, home } = await boardWithHome("L");
    // Between the write and the read-back, the fault hook kills every sshd session on the board:
    // the helper's stdout is gone, and flash-live's connection with it.
    const KILL = '"$2" killall -9 sshd-session; "$2" sleep 1';
    const r = await flashAndProve({ board, home, image: "L2", file: "gz", args: ["--stream", "--accept-new-host-key"], env: { FLASH_LIVE_TEST_FAULT: KILL } });
    const out = r.stdout + r.stderr;
    expect(out).toContain("the SSH session ended after the write began");
    expect(out).not.toContain("verified: every byte");
    expect(out).toMatch(/done in \S+: 320 MiB written to \/dev\/vda, .* sent, verify ok/);
  });

  test("stream, .img.gz re-encoded as lzop -1 on this side (--transport lzo): a corrupted range is reported, the run fails", async () => {
    const { board, home } = await boardWithHome("L");
    const img = await ensureImage("L2", "gz");
    const dump = home.path("patch");
    const cli = home.run(["flash", "board", img.gz, "--stream", "--transport", "lzo", "--yes", "--accept-new-host-key"], { env: { FLASH_LIVE_TEST_FAULT: FAULT, FLASH_LIVE_TEST_PATCH_OUT: dump } });
    await board.waitHeld(600_000);
    // The record on the disk says so too, with the bad range.
    const { patches, record } = await flashedSectors(board, img, dump, "failed");
    expect(record["bad-ranges"]).toStartWith("67108864+67108864");
    const cmp = await board.compareDisk(img.raw, { patches });
    expect(cmp.equal).toBe(false);
    // The first differing byte lies in the zeroed MiB (the image may hold zeros at its start).
    expect(cmp.firstDifferences[0]).toBeGreaterThanOrEqual(100 * 1024 * 1024);
    expect(cmp.firstDifferences[0]).toBeLessThan(101 * 1024 * 1024);
    await board.resume();
    const r = await cli;
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).toContain("VERIFICATION FAILED");
    expect(r.stdout + r.stderr).toContain("sent as    lzo (lzop -1 made on this side): asked for (--transport)");
  });
});
