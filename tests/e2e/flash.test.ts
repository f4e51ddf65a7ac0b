/**
 * issue 6: every flash mode on a booted QEMU board, run as a user runs flash-live (the CLI in a child
 * process, a HOME with ~/.ssh/config and known_hosts). Each case proves the result two ways: the
 * board's disk equals the image byte for byte (checked while the runner holds the board at its
 * reboot), and the board then boots the new image (new marker, new boot_id).
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { type Board, startBoard } from "../harness/board.ts";
import { ensureImage } from "../harness/build-image.ts";
import type { ImageName } from "../harness/recipes.ts";
import { type CliResult, UserHome } from "./_flash-live.ts";

const boards: Board[] = [];
const homes: UserHome[] = [];
afterEach(async () => {
  for (const b of boards.splice(0)) await b.stop();
});
afterAll(() => {
  for (const h of homes.splice(0)) h.cleanup();
});

export const results: { name: string; seconds: number; bytesSent?: string }[] = [];

/** Flash `image` onto a running board and check bytes, boot, marker. */
export async function flashAndProve(opts: {
  board: Board;
  home: UserHome;
  image: ImageName;
  file: "raw" | "gz" | "xz" | "zst";
  args: string[];
  env?: Record<string, string>;
  patches?: { offset: number; data: Uint8Array }[];
}): Promise<CliResult> {
  const { board, home } = opts;
  const img = await ensureImage(opts.image);
  const before = await board.bootId();
  const file = img[opts.file];
  const t0 = performance.now();
  const cli = home.run(["flash", "board", file, "--yes", ...opts.args], { env: opts.env });
  await board.waitHeld(600_000);
  const held = (performance.now() - t0) / 1000;
  const cmp = await board.compareDisk(img.raw, { patches: opts.patches });
  expect(cmp).toMatchObject({ equal: true, differingSectors: 0 });
  await board.resume();
  const r = await cli;
  if (r.code !== 0) console.error(r.stdout, r.stderr);
  expect(r.code).toBe(0);
  const after = await board.waitForReboot(before);
  expect(after).not.toBe(before);
  expect((await board.ssh("cat /etc/image-id")).stdout.trim()).toBe(img.marker);
  // For the closing note: wall time to the reset, and bytes on the wire vs the file's size.
  const done = /done in [^\n]*/.exec(r.stdout + r.stderr)?.[0];
  console.log(`[flash e2e] ${opts.image}.${opts.file} (${img.sizes[opts.file]} B) ${opts.args.join(" ")}: flash to reset ${held.toFixed(1)} s; ${done}`);
  return r;
}

async function boardWithHome(image: ImageName, disk: "virtio" | "nvme" = "virtio") {
  const board = await startBoard({ image, disk, holdAtReboot: true });
  boards.push(board);
  const home = new UserHome();
  homes.push(home);
  await home.trustBoard(board);
  return { board, home };
}

// Between the write and the read-back, the harness-only fault hook zeroes 1 MiB at 100 MiB.
const FAULT = '"$2" dd if=/dev/zero of="$1" bs=1M count=1 seek=100 conv=notrunc,fsync 2>/dev/null';

describe("remote", () => {
  test("ramfs, .img.xz, MBR, virtio; a range corrupted after the write is caught and rewritten from RAM", async () => {
    const { board, home } = await boardWithHome("L");
    const r = await flashAndProve({ board, home, image: "L2", file: "xz", args: ["--accept-new-host-key"], env: { FLASH_LIVE_TEST_FAULT: FAULT } });
    const out = r.stdout + r.stderr;
    expect(out).toContain("read-back found bad ranges (67108864+67108864");
    expect(out).toContain("verified: every byte on /dev/vda matches the image (after rewriting bad ranges from RAM)");
    expect(out).toContain("the board is back");
  });

  test("stream, .img.xz, NVMe", async () => {
    const { board, home } = await boardWithHome("L", "nvme");
    const r = await flashAndProve({ board, home, image: "L2", file: "xz", args: ["--stream", "--accept-new-host-key"] });
    expect(r.stderr + r.stdout).toContain("verified: every byte");
  });

  test("ramfs, .img.zst (re-encoded for the board), GPT", async () => {
    const { board, home } = await boardWithHome("L");
    const r = await flashAndProve({ board, home, image: "L-gpt", file: "zst", args: ["--accept-new-host-key"] });
    expect(r.stderr + r.stdout).toContain("sent as    gz");
  });

  test("stream, raw .img, GPT, virtio", async () => {
    const { board, home } = await boardWithHome("L");
    await flashAndProve({ board, home, image: "L-gpt", file: "raw", args: ["--stream", "--accept-new-host-key"] });
  });
});

describe("verification", () => {
  test("stream: a corrupted range is reported, the run fails", async () => {
    const { board, home } = await boardWithHome("L");
    const img = await ensureImage("L2");
    const cli = home.run(["flash", "board", img.gz, "--stream", "--yes", "--accept-new-host-key"], { env: { FLASH_LIVE_TEST_FAULT: FAULT } });
    await board.waitHeld(600_000);
    const cmp = await board.compareDisk(img.raw);
    expect(cmp.equal).toBe(false);
    // The first differing byte lies in the zeroed MiB (the image may hold zeros at its start).
    expect(cmp.firstDifferences[0]).toBeGreaterThanOrEqual(100 * 1024 * 1024);
    expect(cmp.firstDifferences[0]).toBeLessThan(101 * 1024 * 1024);
    await board.resume();
    const r = await cli;
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).toContain("VERIFICATION FAILED");
  });
});
