/**
 * spawnFilter: a program on this side as a stream stage (the xz transport's encoder). Oracle: the
 * system's xz decodes what went through it back to the input.
 */
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { encoderFor, spawnFilter } from "../../../src/image/filter.ts";

function collect(): { sink: Writable; bytes: () => Buffer } {
  const parts: Buffer[] = [];
  return {
    sink: new Writable({
      write(c, _e, cb) {
        parts.push(c);
        cb();
      },
    }),
    bytes: () => Buffer.concat(parts),
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("spawnFilter", () => {
  test("xz -1 -T0 on 12 MiB of mixed data, in 1 MiB writes: xz -dc gives the input back", async () => {
    const input = Buffer.concat(Array.from({ length: 12 }, (_, i) => (i % 3 === 0 ? randomBytes(1 << 20) : Buffer.alloc(1 << 20, i))));
    const out = collect();
    await pipeline(Readable.from((function* () {
      for (let o = 0; o < input.length; o += 1 << 20) yield input.subarray(o, o + (1 << 20));
    })()), spawnFilter((await encoderFor("xz"))!), out.sink);
    const encoded = out.bytes();
    expect(encoded.length).toBeLessThan(input.length / 2);
    const back = spawnSync("xz", ["-dc"], { input: encoded, maxBuffer: 64 << 20 });
    expect(back.status).toBe(0);
    expect(Buffer.compare(back.stdout, input)).toBe(0);
  }, 60_000);

  test("lzop -1 by the busybox flash-live carries for this machine: 12 MiB in, the board's decoder (the same busybox) gives it back", async () => {
    const input = Buffer.concat(Array.from({ length: 12 }, (_, i) => (i % 3 === 0 ? randomBytes(1 << 20) : Buffer.alloc(1 << 20, i))));
    const cmd = (await encoderFor("lzo"))!;
    expect(cmd.slice(1)).toEqual(["lzop", "-1", "-c"]);
    const out = collect();
    await pipeline(Readable.from([input]), spawnFilter(cmd), out.sink);
    const encoded = out.bytes();
    expect(encoded.length).toBeLessThan(input.length / 2);
    // lzop's own format: magic 0x89 'LZO' 0 \r \n 0x1a \n.
    expect([...encoded.subarray(0, 9)]).toEqual([0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a]);
    const back = spawnSync(cmd[0]!, ["lzop", "-dc"], { input: encoded, maxBuffer: 64 << 20 });
    expect(back.status).toBe(0);
    expect(Buffer.compare(back.stdout, input)).toBe(0);
  }, 60_000);

  test("a program that exits non-zero fails the stage with its status and stderr", async () => {
    const stage = spawnFilter(["sh", "-c", "cat >/dev/null; echo 'no space left' >&2; exit 3"]);
    const err = await pipeline(Readable.from([Buffer.alloc(1000)]), stage, collect().sink).then(() => undefined, (e: Error) => e);
    expect(err?.message).toBe("sh exited with 3: no space left");
  });

  test("a program that is not there fails the stage", async () => {
    const err = await pipeline(Readable.from([Buffer.alloc(10)]), spawnFilter(["/nonexistent/xz"]), collect().sink).then(() => undefined, (e: Error) => e);
    expect(err?.message).toMatch(/^\/nonexistent\/xz could not run here: /);
  });

  test("destroying the stage (a failed copy) kills the program", async () => {
    const stage = spawnFilter(["sh", "-c", "echo $$; exec sleep 30"]);
    const pid = await new Promise<number>((resolve) => stage.once("data", (c: Buffer) => resolve(Number(c.toString().trim()))));
    expect(alive(pid)).toBe(true);
    stage.destroy();
    const t0 = Date.now();
    while (alive(pid) && Date.now() - t0 < 5000) await Bun.sleep(20);
    expect(alive(pid)).toBe(false);
  });
});
