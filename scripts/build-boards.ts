#!/usr/bin/env bun
/**
 * Build (or reuse from the cache) the QEMU board images the e2e tests and the demo use.
 *   bun scripts/build-boards.ts            all images, and the arm64 builds of L and L2 (when this
 *                                          run boots arm64 boards: tests/harness/arm64-boards.ts)
 *   bun scripts/build-boards.ts A L L2     some (x86 only)
 * with the compressed forms the suite uses (USED below).
 * Cache: $FLASH_LIVE_BOARD_CACHE or /var/cache/flash-live-boards. Needs root (debootstrap, chroot).
 */
import { arm64BoardsEnabled, arm64BoardsSkipReason } from "../tests/harness/arm64-boards.ts";
import { ensureArm64Image } from "../tests/harness/build-arm64.ts";
import { ensureImage } from "../tests/harness/build-image.ts";
import { ensureSuiteKey } from "../tests/harness/paths.ts";
import { type Packed, PACKED } from "../tests/harness/compress.ts";
import { IMAGE_NAMES, type ImageName, isImageName } from "../tests/harness/recipes.ts";

/**
 * The compressed forms the suite and the demo flash, made here with their images so that the two test
 * processes do not wait on them; any other form is made when first asked for (compress.ts).
 */
const USED: Partial<Record<ImageName, Packed[]>> = { B: ["gz"], "B-cloud": ["xz"], L2: ["xz", "gz"], "L-gpt": ["gz", "zst"] };
const USED_ARM64: Partial<Record<ImageName, Packed[]>> = { L2: ["xz"] };

const names = process.argv.slice(2);
const unknown = names.filter((n) => !isImageName(n));
if (unknown.length > 0) {
  console.error(`unknown image(s): ${unknown.join(", ")}; known: ${IMAGE_NAMES.join(", ")}`);
  process.exitCode = 2;
} else {
  const t0 = performance.now();
  const report = (name: string, img: { raw: string; buildSeconds: number; sizes: { raw: number } & Partial<Record<Packed, number>> }) => {
    const mib = (n: number) => `${(n / 1048576).toFixed(0)} MiB`;
    const forms = PACKED.filter((f) => img.sizes[f] !== undefined).map((f) => `  ${f} ${mib(img.sizes[f]!)}`).join("");
    console.log(
      `${(img.raw.endsWith("-arm64.img") ? `${name}-arm64` : name).padEnd(8)} ${img.buildSeconds > 0 ? `built in ${img.buildSeconds} s` : "cached"}  raw ${mib(img.sizes.raw)}${forms}  ${img.raw}`,
    );
  };
  const chain = async (builds: (readonly [string, () => Promise<Parameters<typeof report>[1]>])[]) => {
    for (const [name, build] of builds) report(name, await build());
  };
  const x86 = (names.length > 0 ? names.filter(isImageName) : IMAGE_NAMES).map((n) => [n, () => ensureImage(n, ...(USED[n] ?? []))] as const);
  // The arm64 builds share nothing with the x86 ones but the suite key: on a cold cache their package
  // downloads and unpacking run beside debootstrap's (which keeps one core busy at most).
  const withArm64 = names.length === 0 && arm64BoardsEnabled();
  if (names.length === 0 && !withArm64) console.log(`arm64 images not built: the arm64 board cases are skipped (${arm64BoardsSkipReason()})`);
  const arm64 = withArm64 ? (["L", "L2"] as const).map((n) => [n, () => ensureArm64Image(n, ...(USED_ARM64[n] ?? []))] as const) : [];
  await ensureSuiteKey();
  await Promise.all([chain(x86), chain(arm64)]);
  console.log(`total ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}
