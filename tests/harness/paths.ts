import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "./_run.ts";

/**
 * Board images, chroot trees, snapshots and running boards' overlays live OUTSIDE the repo (they
 * are gigabytes, and a fresh clone must not carry them). Override with FLASH_LIVE_BOARD_CACHE.
 */
export function cacheDir(): string {
  const dir = process.env.FLASH_LIVE_BOARD_CACHE || "/var/cache/flash-live-boards";
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function cachePath(...parts: string[]): string {
  const p = join(cacheDir(), ...parts);
  mkdirSync(join(p, ".."), { recursive: true });
  return p;
}

export interface SuiteKey {
  /** Private key (ed25519, no passphrase): authorized for pi, strict and root in every board image. */
  keyPath: string;
  publicKey: string;
}

/**
 * The suite's SSH key, generated once into the cache. It is only ever authorized inside board
 * images, so an SSH session made with it can only log in to a board: part of why destructive
 * commands from the harness cannot reach this machine (see board.ts).
 */
export function ensureSuiteKey(): Promise<SuiteKey> {
  // Once per process: image builds running side by side must not both generate it.
  suiteKey ??= makeSuiteKey();
  return suiteKey;
}

let suiteKey: Promise<SuiteKey> | undefined;

async function makeSuiteKey(): Promise<SuiteKey> {
  const dir = cachePath("keys");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keyPath = join(dir, "id_ed25519");
  if (!existsSync(keyPath) || !existsSync(`${keyPath}.pub`)) {
    await run(["rm", "-f", keyPath, `${keyPath}.pub`]);
    await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "flash-live-test-suite", "-f", keyPath]);
  }
  return { keyPath, publicKey: readFileSync(`${keyPath}.pub`, "utf8").trim() };
}
