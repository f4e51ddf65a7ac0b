import { existsSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { log, run, withLock } from "./_run.ts";
import { cachePath } from "./paths.ts";

/**
 * One cached thing (a chroot tree, an image, a snapshot) at <cache>/<kind>/<name>-<key>.
 * Built into a temporary dir under a lock and published by rename, so nobody ever sees half of
 * one; other processes wait for the lock and then reuse it. Versions superseded by a new key
 * are deleted only after two hours without use: a test run that started before a recipe change
 * keeps its files. This file is deliberately not part of any recipe hash.
 */
export async function ensureCached(kind: string, name: string, key: string, build: (tmp: string, final: string) => Promise<void>): Promise<{ dir: string; built: boolean }> {
  const dir = cachePath(kind, `${name}-${key}`);
  const complete = join(dir, ".complete");
  if (existsSync(complete)) {
    touch(join(dir, ".last-used"));
    return { dir, built: false };
  }
  return withLock(`${dir}.lock`, async () => {
    if (existsSync(complete)) return { dir, built: false };
    const tmp = `${dir}.tmp-${process.pid}`;
    await run(["rm", "-rf", tmp, dir]);
    await run(["mkdir", "-p", tmp]);
    try {
      await build(tmp, dir);
    } catch (e) {
      await run(["rm", "-rf", tmp], { check: false });
      throw e;
    }
    writeFileSync(join(tmp, ".complete"), `${key}\n`);
    touch(join(tmp, ".last-used"));
    await run(["mv", "-T", tmp, dir]);
    await prune(kind, name, key);
    return { dir, built: true };
  });
}

const SUPERSEDED_GRACE_MS = 2 * 3600_000;

async function prune(kind: string, name: string, key: string): Promise<void> {
  const parent = cachePath(kind);
  const version = new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}-([0-9a-f]{16})(\\.lock|\\.tmp-(\\d+))?$`);
  for (const entry of readdirSync(parent)) {
    const m = version.exec(entry);
    if (!m || m[1] === key) continue;
    const path = join(parent, entry);
    if (m[3]) {
      // A build that died with its process.
      if (!isAlive(Number(m[3]))) rmSync(path, { recursive: true, force: true });
      continue;
    }
    if (m[2] === ".lock") {
      if (!existsSync(path.slice(0, -".lock".length))) rmSync(path, { force: true });
      continue;
    }
    const lastUsed = join(path, ".last-used");
    const at = existsSync(lastUsed) ? statSync(lastUsed).mtimeMs : statSync(path).mtimeMs;
    if (Date.now() - at > SUPERSEDED_GRACE_MS) {
      log(`removing superseded ${kind}/${entry}`);
      rmSync(path, { recursive: true, force: true });
      rmSync(`${path}.lock`, { force: true });
    }
  }
}

function touch(path: string): void {
  try {
    const now = new Date();
    if (existsSync(path)) utimesSync(path, now, now);
    else writeFileSync(path, "");
  } catch {
    // Read-only cache or a race with a prune: not worth failing a test for.
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
