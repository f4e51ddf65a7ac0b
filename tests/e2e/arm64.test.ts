/**
 * issue 2: a Raspberry Pi-class CPU. Debian trixie's arm64 kernel and userland on
 * qemu-system-aarch64 -M virt (tests/harness/build-arm64.ts), booted like the x86 boards: kernel,
 * initramfs and cmdline.txt from the FAT of the board's current disk. Flashed over SSH from this
 * (x86) side with the same proof as flash.test.ts. Skipped under CI unless asked for
 * (tests/harness/arm64-boards.ts).
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { arm64BoardsEnabled, arm64BoardsSkipReason } from "../harness/arm64-boards.ts";
import { boardWithHome, cleanupHomes, flashAndProve, stopBoards } from "./_prove.ts";

afterEach(stopBoards);
afterAll(cleanupHomes);

if (!arm64BoardsEnabled()) console.log(`[arm64 e2e] the arm64 board case is skipped: ${arm64BoardsSkipReason()}`);

describe.if(arm64BoardsEnabled())("arm64 board", () => {
  test("ramfs, .img.xz: the L2 arm64 build onto a running arm64 board (flash-live's arm64 busybox runs the helper)", async () => {
    const { board, home } = await boardWithHome("L", "virtio", "arm64");
    expect((await board.ssh("uname -m")).stdout.trim()).toBe("aarch64");
    const r = await flashAndProve({ board, home, image: "L2", arch: "arm64", file: "xz", args: ["--accept-new-host-key"] });
    const out = r.stdout + r.stderr;
    expect(out).toContain("verified: every byte on /dev/vda matches the image");
    expect((await board.ssh("uname -m")).stdout.trim()).toBe("aarch64");
  });
});

