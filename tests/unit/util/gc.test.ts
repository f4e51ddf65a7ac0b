import { describe, expect, test } from "bun:test";
import { collector } from "../../../src/util/gc.ts";

describe("collector", () => {
  test("one collection per `every` bytes moved, counted across calls", () => {
    let runs = 0;
    const collect = collector(8, 0, () => runs++);
    for (let i = 0; i < 20; i++) collect(1);
    expect(runs).toBe(2);
    collect(8);
    expect(runs).toBe(3);
  });

  test("at most one per minMs: the bytes keep counting until it may run", () => {
    let runs = 0;
    const collect = collector(4, 60_000, () => runs++);
    collect(4);
    collect(100);
    expect(runs).toBe(1);
  });
});
