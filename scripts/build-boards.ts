#!/usr/bin/env bun
/**
 * Build (or reuse from the cache) the QEMU board images the e2e tests and the demo use.
 *   bun scripts/build-boards.ts            all images, and the arm64 builds of L and L2
 *   bun scripts/build-boards.ts A L L2     some (x86 only)
 *   --light-ready FILE                     with all images: the light x86 images (L, L2, L-gpt) come
 *                                          first, and FILE is created once they are ready (test.sh
 *                                          starts the cases that need only them meanwhile)
 * Cache: $FLASH_LIVE_BOARD_CACHE or /var/cache/flash-live-boards. Needs root (debootstrap, chroot).
 */
import { ensureArm64Image } from "../tests/harness/build-arm64.ts";
import { ensureImage } from "../tests/harness/build-image.ts";
import { ensureSuiteKey } from "../tests/harness/paths.ts";
import { writeFileSync } from "node:fs";
import { IMAGE_NAMES, IMAGES, isImageName } from "../tests/harness/recipes.ts";

const args = process.argv.slice(2);
const readyAt = args.indexOf("--light-ready");
const lightReady = readyAt >= 0 ? args.splice(readyAt, 2)[1] : undefined;
const names = args;
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
  const light = IMAGE_NAMES.filter((n) => IMAGES[n].flavor === "light");
  // The light images first: they are quick to build, and half of the suite needs nothing else.
  const order = names.length > 0 ? names.filter(isImageName) : [...light, ...IMAGE_NAMES.filter((n) => !light.includes(n))];
  const x86 = order.map((n) => [n, async () => {
    const img = await ensureImage(n);
    if (lightReady && light.every((l) => order.includes(l) && order.indexOf(l) <= order.indexOf(n))) writeFileSync(lightReady, "");
    return img;
  }] as const);
  // The arm64 builds share nothing with the x86 ones but the suite key: on a cold cache their package
  // downloads and unpacking run beside debootstrap's (which keeps one core busy at most).
  const arm64 = names.length === 0 ? [["L", () => ensureArm64Image("L")] as const, ["L2", () => ensureArm64Image("L2")] as const] : [];
  await ensureSuiteKey();
  await Promise.all([chain(x86), chain(arm64)]);
  console.log(`total ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}
