/**
 * The proof every flashing e2e case makes (flash.test.ts, arm64.test.ts): flash-live run as a user
 * runs it, the board's disk equal to the image byte for byte while the runner holds the board at its
 * reset, then the new image booted (new marker, new boot_id) and its flash record read back.
 */
import { expect } from "bun:test";
import { basename } from "node:path";
import { type Board, startBoard } from "../harness/board.ts";
import { ensureArm64Image } from "../harness/build-arm64.ts";
import { ensureImage } from "../harness/build-image.ts";
import type { ImageName } from "../harness/recipes.ts";
import { type CliResult, UserHome } from "./_flash-live.ts";
import { flashedSectors } from "./_record.ts";

const boards: Board[] = [];
const homes: UserHome[] = [];
/** afterEach: stop the boards the last test started. */
export async function stopBoards(): Promise<void> {
  for (const b of boards.splice(0)) await b.stop();
}
/** afterAll: remove the test HOMEs. */
export function cleanupHomes(): void {
  for (const h of homes.splice(0)) h.cleanup();
}

export const results: { name: string; seconds: number; bytesSent?: string }[] = [];

/** Flash `image` onto a running board and check bytes, boot, marker. */
export async function flashAndProve(opts: {
  board: Board;
  home: UserHome;
  image: ImageName;
  /** The image's arm64 build (build-arm64.ts) instead of the x86 one. */
  arch?: "arm64";
  file: "raw" | "gz" | "xz" | "zst";
  args: string[];
  env?: Record<string, string>;
  /** What the read-back finds: "repaired" when a fault is injected in ramfs mode. */
  verify?: "ok" | "repaired";
}): Promise<CliResult> {
  const { board, home } = opts;
  const forms = opts.file === "raw" ? [] : [opts.file];
  const img = opts.arch === "arm64" ? await ensureArm64Image(opts.image, ...forms) : await ensureImage(opts.image, ...forms);
  const before = await board.bootId();
  const file = opts.file === "raw" ? img.raw : img[opts.file];
  const t0 = performance.now();
  const dump = home.path(`patch-${opts.image}-${opts.file}`);
  const cli = home.run(["flash", "board", file, "--yes", ...opts.args], { env: { FLASH_LIVE_TEST_PATCH_OUT: dump, ...opts.env } });
  await board.waitHeld(600_000);
  const held = (performance.now() - t0) / 1000;
  // The image, plus the record file's FAT entries and its sector as the board wrote it: nothing else.
  const { patches } = await flashedSectors(board, img, dump, opts.verify ?? "ok").catch(async (e) => {
    await board.resume();
    const r = await cli;
    console.error(r.stdout, r.stderr);
    throw e;
  });
  const cmp = await board.compareDisk(img.raw, { patches });
  expect(cmp).toMatchObject({ equal: true, differingSectors: 0 });
  await board.resume();
  const r = await cli;
  if (r.code !== 0) console.error(r.stdout, r.stderr);
  expect(r.code).toBe(0);
  const after = await board.waitForReboot(before);
  expect(after).not.toBe(before);
  expect((await board.ssh("cat /etc/image-id")).stdout.trim()).toBe(img.marker);
  // The record survived the reboot, and flash-live read it back from the booted board.
  expect(r.stdout + r.stderr).toContain(`flash record on the board (/boot/firmware/flash-live.txt): verify ${opts.verify ?? "ok"}, ${basename(file)}`);
  // For the closing note: wall time to the reset, and bytes on the wire vs the file's size.
  const done = /done in [^\n]*/.exec(r.stdout + r.stderr)?.[0];
  console.log(`[flash e2e] ${opts.image}.${opts.file} (${opts.file === "raw" ? img.sizes.raw : img.sizes[opts.file]} B) ${opts.args.join(" ")}: flash to reset ${held.toFixed(1)} s; ${done}`);
  return r;
}

export async function boardWithHome(image: ImageName, disk: "virtio" | "nvme" = "virtio", arch?: "arm64") {
  const board = await startBoard({ image, disk, arch, holdAtReboot: true });
  boards.push(board);
  const home = new UserHome();
  homes.push(home);
  await home.trustBoard(board);
  return { board, home };
}

