/**
 * This side's scratch directories (src/util/private-tmp.ts): private, removed at exit, and those of a
 * run that was killed (-9) are removed by the next one; nothing else is touched.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { privateTempDir, sweepStale } from "../../../src/util/private-tmp.ts";

const base = mkdtempSync(join(tmpdir(), "flash-live-ptmp-test-"));
afterAll(() => rmSync(base, { recursive: true, force: true }));

/** A pid that does not run now: a child that has exited. */
function deadPid(): number {
  const r = spawnSync("sh", ["-c", "echo $$"]);
  return Number(r.stdout.toString().trim());
}

describe("privateTempDir", () => {
  test("0700, named with the pid, removed by remove() and not twice", () => {
    const { dir, remove } = privateTempDir("copy", base);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(dir).toContain(`flash-live-copy-${process.pid}-`);
    remove();
    expect(existsSync(dir)).toBe(false);
    remove();
  });

  test("removed when the process exits: normally, and on SIGTERM, SIGINT, SIGHUP (exitOnSignals, as src/cli.ts does)", () => {
    const mod = join(import.meta.dir, "../../../src/util/private-tmp.ts");
    for (const [how, code] of [
      ["", 0],
      ["process.kill(process.pid, 'SIGTERM'); await Bun.sleep(5000);", 143],
      ["process.kill(process.pid, 'SIGINT'); await Bun.sleep(5000);", 130],
      ["process.kill(process.pid, 'SIGHUP'); await Bun.sleep(5000);", 129],
    ] as const) {
      const script = `
        import { exitOnSignals, privateTempDir } from ${JSON.stringify(mod)};
        exitOnSignals();
        const { dir } = privateTempDir("bin", ${JSON.stringify(base)});
        await Bun.write(dir + "/f", "x");
        console.log(dir);
        ${how}`;
      const r = spawnSync(process.execPath, ["-e", script]);
      const dir = r.stdout.toString().trim();
      expect(dir).toContain("flash-live-bin-");
      expect({ how, exists: existsSync(dir) }).toEqual({ how, exists: false });
      expect(r.status).toBe(code);
    }
  });

  test("a killed run's directories are swept; a live run's, other names and plain files are not", () => {
    const dead = deadPid();
    const stale = join(base, `flash-live-copy-${dead}-abc123`);
    const staleBin = join(base, `flash-live-bin-${dead}-xyz789`);
    const live = join(base, `flash-live-copy-${process.pid}-def456`);
    const liveOther = join(base, `flash-live-copy-1-ghi000`);
    const other = join(base, `flash-live-home-${dead}-jkl111`);
    for (const d of [stale, staleBin, live, liveOther, other]) mkdirSync(join(d, "sub"), { recursive: true });
    // (The processes of the test above are gone too, but they removed their directories.)
    expect(sweepStale(base).sort()).toEqual([staleBin, stale].sort());
    expect(readdirSync(base).sort()).toEqual([live, liveOther, other].map((d) => d.slice(base.length + 1)).sort());
  });
});
