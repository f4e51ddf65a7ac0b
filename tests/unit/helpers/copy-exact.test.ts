/**
 * flash.sh's copy_exact, the function that writes each range, run alone under the pinned busybox
 * against a scratch FILE (never a device: the helper itself only ever runs on a test board). What
 * it must do past the point of no return: zeros O_DIRECT where that is allowed, buffered where it is
 * not, and buffered again when a direct write fails; the record count proves every byte.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { busyboxFor } from "../../../src/assets/busybox.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
let dir: string;
let bb: string;
let fn: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "flash-live-copy-exact-"));
  bb = join(dir, "busybox");
  writeFileSync(bb, await busyboxFor("x86_64"), { mode: 0o700 });
  const script = readFileSync(join(import.meta.dir, "../../../src/helpers/flash.sh"), "utf8");
  fn = script.match(/^copy_exact\(\) \{[\s\S]*?\n\}\n/m)?.[0] ?? "";
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * copy_exact LEN OFF /dev/zero on a 0xff-filled file of `size` bytes, through `bbPath` (the busybox,
 * or a wrapper); returns its status, the file and the log of what dd said.
 */
function zeros(len: number, off: number, opts: { size?: number; direct?: 0 | 1; bbPath?: string } = {}) {
  const disk = join(dir, "disk");
  writeFileSync(disk, Buffer.alloc(opts.size ?? 16 * MiB, 0xff));
  rmSync(join(dir, "dd.err"), { force: true });
  const r = Bun.spawnSync([bb, "sh", "-c", `BB=${opts.bbPath ?? bb}; DISK=${disk}; WORK=${dir}; BS=4194304; DIRECT_OK=${opts.direct ?? 1}\n${fn}\ncopy_exact ${len} ${off} /dev/zero; echo "rc=$?"`]);
  let log = "";
  try {
    log = readFileSync(join(dir, "dd.err"), "utf8");
  } catch {}
  return { out: r.stdout.toString(), err: r.stderr.toString(), data: readFileSync(disk), log };
}

/** 0xff everywhere but [off, off+len), which is zero. */
function expected(size: number, off: number, len: number): Buffer {
  const b = Buffer.alloc(size, 0xff);
  b.fill(0, off, off + len);
  return b;
}

describe("flash.sh's copy_exact writing zeros", () => {
  test("the function is found in flash.sh", () => {
    expect(fn).toContain("oflag=seek_bytes,direct");
  });

  for (const [name, len, off, direct] of [
    ["aligned, several 4 MiB records and a partial one: direct", 9 * MiB + 8 * KiB, 4 * MiB, true],
    ["a length that is not whole 4 KiB blocks: buffered", 3 * MiB + 512, 1 * MiB, false],
    ["an offset that is not whole 4 KiB blocks: buffered", 2 * MiB, 512, false],
  ] as const) {
    test(name, () => {
      // A busybox that logs each dd it runs, then runs it.
      const calls = join(dir, "calls");
      rmSync(calls, { force: true });
      const wrapper = join(dir, "bb-log");
      writeFileSync(wrapper, `#!${bb} sh
echo "$*" >> ${calls}
exec ${bb} "$@"
`, { mode: 0o700 });
      const r = zeros(len, off, { bbPath: wrapper });
      expect(r.out.trim()).toBe("rc=0");
      // The first dd asked for O_DIRECT exactly when the range allows it. (Whether this machine's
      // temp dir then took it does not matter: a refused one is done again buffered, below.)
      const first = readFileSync(calls, "utf8").split("\n")[0]!;
      expect(first.includes("direct")).toBe(direct);
      expect(r.data.equals(expected(16 * MiB, off, len))).toBe(true);
      // The record count of the dd that wrote it: full 4 MiB records, then one partial.
      expect(r.log).toContain(`${Math.floor(len / (4 * MiB))}+${len % (4 * MiB) > 0 ? 1 : 0} records out`);
    });
  }

  test("a direct write that fails is done again buffered, and the range holds the zeros", () => {
    // A busybox whose dd refuses O_DIRECT (as on a device that does not take it).
    const wrapper = join(dir, "bb-no-direct");
    writeFileSync(wrapper, `#!${bb} sh\ncase "$*" in *direct*) echo "dd: can't open: Invalid argument" >&2; exit 1 ;; esac\nexec ${bb} "$@"\n`, { mode: 0o700 });
    const r = zeros(8 * MiB, 4 * MiB, { bbPath: wrapper });
    expect(r.out.trim()).toBe("rc=0");
    expect(r.data.equals(expected(16 * MiB, 4 * MiB, 8 * MiB))).toBe(true);
    expect(r.log).toContain("2+0 records out");
  });

  test("DIRECT_OK=0 (a disk whose logical blocks do not divide 4 KiB): buffered", () => {
    const wrapper = join(dir, "bb-no-direct");
    const r = zeros(8 * MiB, 4 * MiB, { direct: 0, bbPath: wrapper });
    expect(r.out.trim()).toBe("rc=0");
    expect(r.data.equals(expected(16 * MiB, 4 * MiB, 8 * MiB))).toBe(true);
  });

  test("every write failing (/dev/full): status 1, nothing reported written", () => {
    // /dev/full: every write fails with ENOSPC, direct or not.
    const r = Bun.spawnSync([bb, "sh", "-c", `BB=${bb}; DISK=/dev/full; WORK=${dir}; BS=4194304; DIRECT_OK=1\n${fn}\ncopy_exact ${4 * MiB} 0 /dev/zero; echo "rc=$?"`]);
    expect(r.stdout.toString().trim()).toBe("rc=1");
  });
});
