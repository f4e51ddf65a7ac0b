/**
 * issue 6, local mode: the compiled binary runs ON the board (as root, from a second disk standing
 * in for a USB stick), exactly as a user with a console would run it: linux-x64 on the x86 boards,
 * linux-arm64 on an arm64 board (a Cortex-A72, the Raspberry Pi 4's CPU).
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { parseRecord } from "../../src/core/record.ts";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { type Board, startBoard } from "../harness/board.ts";
import { arm64BoardsEnabled, arm64BoardsSkipReason } from "../harness/arm64-boards.ts";
import { ensureArm64Image } from "../harness/build-arm64.ts";
import { ensureImage } from "../harness/build-image.ts";

const ROOT = resolve(import.meta.dir, "../..");
const BIN = join(ROOT, "dist/flash-live-linux-x64");
const BIN_ARM64 = join(ROOT, "dist/flash-live-linux-arm64");
let stick: string;
let stickArm64: string | undefined;
const ARM64 = arm64BoardsEnabled();
const boards: Board[] = [];

beforeAll(async () => {
  const b = Bun.spawnSync(["bash", "scripts/build.sh", "x64", "arm64"], { cwd: ROOT, stdout: "inherit", stderr: "inherit" });
  if (b.exitCode !== 0) throw new Error("building the binaries failed");
  stick = mkdtempSync(join(tmpdir(), "flash-live-stick-"));
  copyFileSync(BIN, join(stick, "flash-live"));
  Bun.spawnSync(["chmod", "755", join(stick, "flash-live")]);
  const l2 = await ensureImage("L2", "xz");
  const lgpt = await ensureImage("L-gpt", "gz");
  copyFileSync(l2.xz, join(stick, "L2.img.xz"));
  copyFileSync(lgpt.gz, join(stick, "L-gpt.img.gz"));
  if (!ARM64) {
    console.log(`[local e2e] the arm64 board case is skipped: ${arm64BoardsSkipReason()}`);
    return;
  }
  stickArm64 = mkdtempSync(join(tmpdir(), "flash-live-stick-arm64-"));
  copyFileSync(BIN_ARM64, join(stickArm64, "flash-live"));
  Bun.spawnSync(["chmod", "755", join(stickArm64, "flash-live")]);
  copyFileSync((await ensureArm64Image("L2", "xz")).xz, join(stickArm64, "L2.img.xz"));
}, 600_000);
afterEach(async () => {
  for (const b of boards.splice(0)) await b.stop();
});
afterAll(() => {
  rmSync(stick, { recursive: true, force: true });
  if (stickArm64) rmSync(stickArm64, { recursive: true, force: true });
});

async function localFlash(file: string, image: "L2" | "L-gpt", extra: string[], arch?: "arm64") {
  const img = arch ? await ensureArm64Image(image) : await ensureImage(image);
  const board = await startBoard({ image: "L", arch, holdAtReboot: true, extraDisks: [{ fromDir: arch ? stickArm64! : stick, label: "stick" }] });
  boards.push(board);
  await board.ssh("mkdir -p /mnt/usb && mount -o ro LABEL=stick /mnt/usb || mount -o ro /dev/vdb /mnt/usb", { user: "root" });
  const before = await board.bootId();
  // The session stays open until the board resets; its output is the helper's progress.
  const run = board.ssh(`/mnt/usb/flash-live flash --local --yes ${extra.join(" ")} /mnt/usb/${file} 2>&1`, { user: "root", check: false, timeoutMs: 900_000 });
  await board.waitHeld(900_000);
  const out = (await run).stdout; // the session ran with 2>&1
  // The image, except a few sectors of the boot partition: the record file (flash-live.txt) and its
  // FAT entries. (Local runs leave no patch dump on this side: the CLI ran on the board.)
  const cmp = await board.compareDisk(img.raw);
  const boot = img.partitions[0]!;
  const outside = cmp.differingSectorOffsets.filter((o) => o < boot.start || o >= boot.start + boot.size);
  if (outside.length || cmp.differingSectors > 64) console.error(out, cmp);
  expect(outside).toEqual([]);
  expect(cmp.differingSectors).toBeGreaterThan(0);
  expect(cmp.differingSectors).toBeLessThanOrEqual(64);
  // That boot partition is a clean FAT (fsck.fat, the oracle) holding the record.
  const fat = join(stick, `boot-${image}${arch ? "-arm64" : ""}.fat`);
  writeFileSync(fat, await board.readDisk(boot.start, boot.size));
  const fsck = Bun.spawnSync(["fsck.fat", "-n", fat], { stdout: "pipe", stderr: "pipe" });
  rmSync(fat);
  expect(fsck.exitCode).toBe(0);
  expect(out).toContain("verified");
  await board.resume();
  expect(await board.waitForReboot(before)).not.toBe(before);
  expect((await board.ssh("cat /etc/image-id")).stdout.trim()).toBe(img.marker);
  const record = parseRecord((await board.ssh("cat /boot/firmware/flash-live.txt", { user: "root" })).stdout);
  expect(record).toMatchObject({ image: file, "image-sha256": img.sha256, verify: "ok", from: "this board (--local)" });
  // ramfs: busybox decodes the copy (its check, the write, a repair), so the .xz is decoded once
  // here and the copy in RAM is lzop -1 without the zero blocks; stream: the file as it is.
  expect(record.mode).toStartWith(extra.includes("--ramfs") ? "ramfs (local), sent as lzo" : `stream (local), sent as ${file.endsWith(".gz") ? "gz" : "xz"}`);
  console.log(`[local e2e] ${file} ${extra.join(" ")} ${arch ?? "x64"}:\n${out}`);
  return out;
}

describe("local (the compiled binary on the board)", () => {
  test("ramfs: .img.xz copied to RAM first", async () => {
    const out = await localFlash("L2.img.xz", "L2", ["--ramfs"]);
    expect(out).toContain("mode       ramfs (local)");
    // The .xz is decoded once: the image check feeds the copy in RAM (no "copying to RAM" pass after it).
    expect(out).toMatch(/^sent as +lzo \(lzop -1 made in RAM during the image check: [\d.]+ MiB\): /m);
    expect(out).toMatch(/^\[info\] copied to RAM during the image check: [\d.]+ MiB \(lzop -1 of [\d.]+ MiB\)$/m);
    expect(out).not.toContain("copying to RAM");
    expect(out).toMatch(/^packed +[\d.]+ MiB of the image's bytes go into the copy; [\d.]+ MiB of zero blocks are written from \/dev\/zero$/m);
    expect(out).toContain("checking the copy on the board: md5 of what arrived");
  });

  // .gz here: the ramfs cases (x64 and arm64) cover .xz on the board. A stream decodes the file
  // twice (the check, then the write), and gzip decodes faster than xz on a TCG board: this case
  // took 164 s with L-gpt.img.xz, 122 s with the .gz (CI-style runs of 2026-11-29).
  test("stream: .img.gz read from another disk during the write, GPT", async () => {
    const out = await localFlash("L-gpt.img.gz", "L-gpt", ["--stream"]);
    expect(out).toContain("mode       stream (local)");
    expect(out).toMatch(/^sent as +gz: the file as it is/m);
  });

  test.if(ARM64)("arm64: the linux-arm64 binary on an arm64 board (Cortex-A72) flashes its own disk, ramfs", async () => {
    const out = await localFlash("L2.img.xz", "L2", ["--ramfs"], "arm64");
    // The board runs only aarch64 code: the flash-live that wrote this output is the arm64 build.
    expect(out).toContain("mode       ramfs (local)");
  });
});
