import { afterAll, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { RemoteCommandError } from "../../../src/errors.ts";
import { createLocalTarget } from "../../../src/target/local.ts";

const dir = mkdtempSync(join(tmpdir(), "fl-local-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const t = createLocalTarget();

test("identity", () => {
  expect(t.kind).toBe("local");
  expect(t.name).toBe("local");
  expect(t.host).toBe(hostname());
});

test("exec: argv without a shell, exit codes, stderr, env, stdin", async () => {
  expect(await t.exec(["printf", "%s|", "$HOME", "a b", "'"])).toEqual({ code: 0, stdout: "$HOME|a b|'|", stderr: "" });
  expect(await t.exec(["sh", "-c", "echo e >&2; exit 4"], { check: false })).toEqual({ code: 4, stdout: "", stderr: "e\n" });
  await expect(t.exec(["false"])).rejects.toBeInstanceOf(RemoteCommandError);
  expect((await t.exec(["sh", "-c", 'printf %s "$FL_Y"'], { env: { FL_Y: "yes" } })).stdout).toBe("yes");
  expect((await t.exec(["cat"], { stdin: "in" })).stdout).toBe("in");
  // Running as root already: no sudo in front.
  if (process.getuid?.() === 0) expect((await t.exec(["id", "-u"], { root: true })).stdout).toBe("0\n");
});

test("a missing program is exit 127 with a message", async () => {
  const e = await t.exec(["/no/such/program"]).catch((x) => x);
  expect(e).toBeInstanceOf(RemoteCommandError);
  expect(e.code).toBe(127);
  expect(e.stderr).toContain("not found");
});

test("spawn: kill ends the command with no status", async () => {
  const p = await t.spawn(["sleep", "30"]);
  p.kill();
  expect(await p.exited).toBe(null);
});

test("put: stream with mode from creation, replaces a 0644 file", async () => {
  const f = join(dir, "img");
  writeFileSync(f, "old", { mode: 0o644 });
  const parts = Array.from({ length: 64 }, () => randomBytes(100_000));
  let last = 0;
  await t.put(f, Readable.from(parts), { mode: "0600", onProgress: (b) => (last = b) });
  expect(last).toBe(6_400_000);
  expect((statSync(f).mode & 0o777).toString(8)).toBe("600");
  const want = createHash("sha256");
  for (const p of parts) want.update(p);
  expect(createHash("sha256").update(readFileSync(f)).digest("hex")).toBe(want.digest("hex"));
  await t.put(f, "s", { mode: "0644", root: true });
  expect(readFileSync(f, "utf8")).toBe("s");
  expect((statSync(f).mode & 0o777).toString(8)).toBe("644");
});

test("put: a failing source stream stops the write and removes the partial file", async () => {
  const f = join(dir, "broken");
  const src = Readable.from(
    (async function* () {
      yield randomBytes(3 << 20);
      throw new Error("source broke");
    })(),
  );
  await expect(t.put(f, src)).rejects.toThrow("source broke");
  expect(existsSync(f)).toBe(false);
});
