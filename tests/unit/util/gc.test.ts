import { describe, expect, test } from "bun:test";
import { collector, type GcPool } from "../../../src/util/gc.ts";

const pool = (): GcPool => ({ moved: 0, last: Number.NEGATIVE_INFINITY });

describe("collector", () => {
  test("one collection per `every` bytes moved, counted across calls", () => {
    let runs = 0;
    const collect = collector(8, 0, () => runs++, pool());
    for (let i = 0; i < 20; i++) collect(1);
    expect(runs).toBe(2);
    collect(8);
    expect(runs).toBe(3);
  });

  test("at most one per minMs: the bytes keep counting until it may run", () => {
    let runs = 0;
    const collect = collector(4, 60_000, () => runs++, pool());
    collect(4);
    collect(100);
    expect(runs).toBe(1);
  });

  test("collectors share one count (garbage is the process's): two streams at once collect as often as one stream moving both", () => {
    let runs = 0;
    const shared = pool();
    const a = collector(8, 0, () => runs++, shared);
    const b = collector(8, 0, () => runs++, shared);
    // 6 bytes through each: neither alone reaches 8, together they do.
    for (let i = 0; i < 6; i++) (i % 2 ? a : b)(2);
    expect(runs).toBe(1);
    // The smaller threshold decides for its own stream, on everything moved since the last collection.
    const small = collector(4, 0, () => runs++, shared);
    a(3);
    small(1);
    expect(runs).toBe(2);
  });
});
