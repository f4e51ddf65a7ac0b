import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Private scratch directories on this side (0700): the busybox this side runs (lzop) and the ramfs
 * copy made during the image pass (src/image/spool.ts, up to the copy's size). Each is removed when
 * the process exits (Ctrl-C, SIGTERM and SIGHUP included: exitOnSignals(), from src/cli.ts). A kill -9
 * cannot be caught: the name carries the pid, and the next run removes the directories of this user
 * whose process is gone.
 */
export type ScratchKind = "bin" | "copy";

const STALE = /^flash-live-(bin|copy)-(\d+)-/;
let swept = false;

export function privateTempDir(kind: ScratchKind, base = tmpdir()): { dir: string; remove: () => void } {
  if (!swept) {
    swept = true;
    sweepStale(base);
  }
  const dir = mkdtempSync(join(base, `flash-live-${kind}-${process.pid}-`));
  const remove = () => {
    process.removeListener("exit", remove);
    rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", remove);
  return { dir, remove };
}

/**
 * Ctrl-C, SIGTERM and SIGHUP end the process through its exit (status 128 + signal), so the exit
 * handlers run; by default Bun skips them for SIGTERM and SIGHUP (and for a SIGINT it sends itself).
 */
export function exitOnSignals(): void {
  for (const [signal, n] of [["SIGINT", 2], ["SIGTERM", 15], ["SIGHUP", 1]] as const) process.once(signal, () => process.exit(128 + n));
}

/** Remove scratch directories of this user left by processes that no longer run. Returns what it removed. */
export function sweepStale(base = tmpdir()): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(base);
  } catch {
    return removed;
  }
  const uid = process.getuid?.();
  for (const name of names) {
    const m = STALE.exec(name);
    if (!m) continue;
    const pid = Number(m[2]);
    if (pid === process.pid || alive(pid)) continue;
    const path = join(base, name);
    try {
      const st = statSync(path);
      if (!st.isDirectory() || (uid !== undefined && st.uid !== uid)) continue;
      rmSync(path, { recursive: true, force: true });
      removed.push(path);
    } catch {
      // Gone already, or not ours to remove.
    }
  }
  return removed;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it runs, as another user.
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}
