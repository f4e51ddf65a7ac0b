import { describe, expect, test } from "bun:test";
import { flash } from "../../../src/core/run-flash.ts";
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
