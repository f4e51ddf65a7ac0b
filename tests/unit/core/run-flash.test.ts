import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { flash } from "../../../src/core/run-flash.ts";
import { describeRanges } from "../../../src/modes/flash.ts";
import { UserError } from "../../../src/errors.ts";

describe("flash() without --yes in a non-interactive run", () => {
  // 203.0.113.1 (TEST-NET-3) answers nobody: a connection attempt would hang, not refuse at once.
  const req = { local: false, destination: "pi@203.0.113.1", imagePath: "/images/my board.img.xz", configDir: "/" };

  test("refuses before connecting, naming --yes and the check command for this host and image", async () => {
    const t0 = performance.now();
    const e = await flash({ ...req, config: {}, interactive: false }).catch((x) => x);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(e).toBeInstanceOf(UserError);
    expect(e.exitCode).toBe(2);
    expect(e.message).toContain("without confirmation in a non-interactive run");
    expect(e.hint).toContain("--yes");
    expect(e.hint).toContain("flash-live check pi@203.0.113.1 '/images/my board.img.xz'");
  });

  test("--local names check --local", async () => {
    const e = await flash({ ...req, local: true, destination: undefined, config: {}, interactive: false }).catch((x) => x);
    expect(e.hint).toContain("flash-live check --local '/images/my board.img.xz'");
  });

  test("a config error still comes first: it names the file's problem, not --yes", async () => {
    const e = await flash({ ...req, config: { hostname: "bad_name!" }, interactive: false }).catch((x) => x);
    expect(e).toBeInstanceOf(UserError);
    expect(e.message).toContain("not a valid host name");
  });
});

describe("flash() with an image that cannot be flashed", () => {
  const dir = mkdtempSync(join(tmpdir(), "flash-live-run-flash-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  // Confirmed (--yes), so only the image can stop it before the login to a host that answers nobody.
  const flashIt = (imagePath: string) =>
    flash({ local: false, destination: "pi@203.0.113.1", imagePath, configDir: "/", config: { yes: true }, interactive: false }).catch((x) => x);

  test("a missing file: named before any login", async () => {
    const t0 = performance.now();
    const e = await flashIt(join(dir, "nope.img.xz"));
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(e).toBeInstanceOf(UserError);
    expect(e.message).toContain(`Image not found: ${join(dir, "nope.img.xz")}`);
  });

  test("an .xz cut short (no index): named before any login", async () => {
    const xz = Bun.spawnSync(["xz", "-1", "-c"], { stdin: new Uint8Array(1 << 20).fill(7) });
    expect(xz.exitCode).toBe(0);
    const cut = join(dir, "cut.img.xz");
    writeFileSync(cut, xz.stdout.subarray(0, Math.floor(xz.stdout.length / 2)));
    const t0 = performance.now();
    const e = await flashIt(cut);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(e).toBeInstanceOf(UserError);
    expect(e.message).toMatch(/not a complete \.xz file/);
  });
});

describe("describeRanges: the helper's bad ranges, for people", () => {
  test("each OFFSET+LENGTH keeps its bytes and gains its size and place", () => {
    expect(describeRanges("67108864+67108864 ")).toBe("67108864+67108864 (64.0 MiB at 64.0 MiB)");
    expect(describeRanges("0+4096 1073741824+1048576")).toBe("0+4096 (4.0 KiB at 0 B), 1073741824+1048576 (1.0 MiB at 1.0 GiB)");
  });
  test("nothing, or something else, is passed on as it is", () => {
    expect(describeRanges(undefined)).toBe("?");
    expect(describeRanges("  ")).toBe("?");
    expect(describeRanges("garbled")).toBe("garbled");
  });
});
