#!/usr/bin/env bun
/**
 * Build (or reuse from the cache) the QEMU board images the e2e tests and the demo use.
 *   bun scripts/build-boards.ts            all images, and the arm64 builds of L and L2
 *   bun scripts/build-boards.ts A L L2     some (x86 only)
 * Cache: $FLASH_LIVE_BOARD_CACHE or /var/cache/flash-live-boards. Needs root (debootstrap, chroot).
 */
import { ensureArm64Image } from "../tests/harness/build-arm64.ts";
import { ensureImage } from "../tests/harness/build-image.ts";
import { ensureSuiteKey } from "../tests/harness/paths.ts";
import { IMAGE_NAMES, isImageName } from "../tests/harness/recipes.ts";

const names = process.argv.slice(2);
const unknown = names.filter((n) => !isImageName(n));
if (unknown.length > 0) {
  console.error(`unknown image(s): ${unknown.join(", ")}; known: ${IMAGE_NAMES.join(", ")}`);
  process.exitCode = 2;
} else {
  const t0 = performance.now();
  const report = (name: string, img: { raw: string; buildSeconds: number; sizes: Record<"raw" | "xz" | "gz" | "zst", number> }) => {
    const mib = (n: number) => `${(n / 1048576).toFixed(0)} MiB`;
    console.log(
      `${(img.raw.endsWith("-arm64.img") ? `${name}-arm64` : name).padEnd(8)} ${img.buildSeconds > 0 ? `built in ${img.buildSeconds} s` : "cached"}  raw ${mib(img.sizes.raw)}  xz ${mib(img.sizes.xz)}  gz ${mib(img.sizes.gz)}  zst ${mib(img.sizes.zst)}  ${img.raw}`,
    );
  };
  const chain = async (builds: (readonly [string, () => Promise<Parameters<typeof report>[1]>])[]) => {
    for (const [name, build] of builds) report(name, await build());
  };
  const x86 = (names.length > 0 ? names.filter(isImageName) : IMAGE_NAMES).map((n) => [n, () => ensureImage(n)] as const);
  // The arm64 builds share nothing with the x86 ones but the suite key: on a cold cache their package
  // downloads and unpacking run beside debootstrap's (which keeps one core busy at most).
  const arm64 = names.length === 0 ? [["L", () => ensureArm64Image("L")] as const, ["L2", () => ensureArm64Image("L2")] as const] : [];
  await ensureSuiteKey();
  await Promise.all([chain(x86), chain(arm64)]);
  console.log(`total ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}
