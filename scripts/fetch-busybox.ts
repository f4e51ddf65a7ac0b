#!/usr/bin/env bun
/**
 * Fetches the pinned busybox-static binaries (src/assets/busybox-pins.ts) into the per-user cache and
 * src/assets/busybox/, and writes src/assets/_embedded.ts for `bun build --compile`.
 * Idempotent; with everything cached it only compares files.
 *
 *   bun scripts/fetch-busybox.ts                 fetch what is missing
 *   bun scripts/fetch-busybox.ts --update-pins   re-pin to the suite's current version (signature-checked)
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { debianMirror, fetchRelease, lookupPackage } from "../src/assets/_debian-index.ts";
import { downloadBusybox, ensureBusybox, installAssets } from "../src/assets/_fetch-busybox.ts";
import { BUSYBOX_ARCHES, BUSYBOX_PINS, BUSYBOX_SUITE, type BusyboxArch } from "../src/assets/busybox.ts";
import type { BusyboxPin } from "../src/assets/busybox-pins.ts";
import { UserError } from "../src/errors.ts";

const PINS_FILE = join(import.meta.dir, "../src/assets/busybox-pins.ts");

async function updatePins(): Promise<void> {
  const mirror = debianMirror();
  const release = await fetchRelease(mirror, BUSYBOX_SUITE, true);
  const pins = {} as Record<BusyboxArch, BusyboxPin>;
  for (const arch of BUSYBOX_ARCHES) {
    const found = await lookupPackage(mirror, BUSYBOX_SUITE, release, arch, "busybox-static");
    if (!found) throw new Error(`${BUSYBOX_SUITE} has no busybox-static for ${arch}`);
    const { verified: _, ...pin } = found;
    // Prove the new pin end to end (sha256, extraction, ELF) before writing it down.
    await downloadBusybox(arch, pin, mirror);
    const old = BUSYBOX_PINS[arch];
    console.log(`${arch}: ${old.version === pin.version && old.sha256 === pin.sha256 ? "unchanged" : `${old.version} -> ${pin.version}`} (sha256 ${pin.sha256})`);
    pins[arch] = pin;
  }
  const source = readFileSync(PINS_FILE, "utf8");
  const entries = Object.entries(pins).map(
    ([arch, pin]) =>
      `  ${arch}: {\n${Object.entries(pin).map(([key, value]) => `    ${key}: ${JSON.stringify(value)},`).join("\n")}\n  },\n`,
  );
  const table = `export const BUSYBOX_PINS = {\n${entries.join("")}} as const satisfies`;
  const updated = source.replace(/export const BUSYBOX_PINS = \{[\s\S]*?\} as const satisfies/, table);
  if (updated !== source) {
    writeFileSync(PINS_FILE, updated);
    console.log(`wrote ${PINS_FILE}: rerun this script without --update-pins to fetch, then commit the pins`);
  }
}

async function main(args: string[]): Promise<number> {
  try {
    if (args.includes("--update-pins")) {
      await updatePins();
      return 0; // the pins module is already loaded with the old values: fetch in a fresh process
    }
    for (const arch of BUSYBOX_ARCHES) {
      const { path, fetched } = await ensureBusybox(arch);
      if (fetched) console.log(`busybox ${BUSYBOX_PINS[arch].version} ${arch}: fetched into ${path}`);
    }
    for (const path of installAssets(BUSYBOX_ARCHES)) console.log(`updated ${path}`);
    return 0;
  } catch (error) {
    if (error instanceof UserError) {
      console.error(`fetch-busybox: ${error.message}${error.hint ? `\n${error.hint}` : ""}`);
      return error.exitCode;
    }
    throw error;
  }
}

process.exitCode = await main(process.argv.slice(2));
