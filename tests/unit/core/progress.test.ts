import { describe, expect, test } from "bun:test";
import { createProgress } from "../../../src/core/progress.ts";

function sink() {
  const lines: string[] = [];
  const out = { isTTY: false, write: (s: string) => lines.push(s) } as unknown as NodeJS.WriteStream;
  return { out, lines };
}

describe("createProgress (not a TTY: a plain line every few seconds)", () => {
  test("the first line has no speed and no ETA yet (one sample is no speed), not '0 B/s'", () => {
    const { out, lines } = sink();
    const p = createProgress("reading back", 1 << 30, out);
    p.update(64 << 20);
    expect(lines).toEqual(["reading back   6%  64.0 MiB / 1.0 GiB\n"]);
  });

  test("updates within a few seconds print nothing more; finish prints the total and the average", () => {
    const { out, lines } = sink();
    const p = createProgress("writing", 1 << 30, out);
    p.update(1 << 20);
    p.update(2 << 20);
    p.finish();
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(/^writing {2}2\.0 MiB in 0s \(.+\/s\)\n$/);
  });
});
