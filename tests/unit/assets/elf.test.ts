// ELF header facts against readelf (binutils), on real binaries of several machines.
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { ensureBusybox } from "../../../src/assets/_fetch-busybox.ts";
import { EM, elfMismatch, readElf } from "../../../src/assets/_elf.ts";
import { BUSYBOX_ARCHES, type BusyboxArch } from "../../../src/assets/busybox.ts";

function readelf(path: string) {
  const header = Bun.spawnSync(["readelf", "-h", path]).stdout.toString();
  const segments = Bun.spawnSync(["readelf", "-lW", path]).stdout.toString();
  const field = (name: string) => new RegExp(`^\\s*${name}:\\s*(.*)$`, "m").exec(header)![1]!.trim();
  return {
    bits: (field("Class") === "ELF64" ? 64 : 32) as 32 | 64,
    machineName: field("Machine"),
    flags: Number.parseInt(field("Flags").split(",")[0]!, 16),
    isStatic: !/^\s*INTERP\s/m.test(segments),
  };
}

const MACHINE_NAMES: Record<number, string> = {
  [EM.X86_64]: "Advanced Micro Devices X86-64",
  [EM.AARCH64]: "AArch64",
  [EM.ARM]: "ARM",
  [EM.RISCV]: "RISC-V",
};

const hostFiles = ["/bin/ls", "/bin/busybox", "/usr/aarch64-linux-gnu/lib/libc.so.6"].filter(existsSync).map((p) => realpathSync(p));

describe("readElf", () => {
  test("agrees with readelf on host binaries and every pinned busybox", async () => {
    const busyboxes = await Promise.all(BUSYBOX_ARCHES.map(async (arch) => (await ensureBusybox(arch)).path));
    const files = [...hostFiles, ...busyboxes];
    expect(files.length).toBeGreaterThanOrEqual(BUSYBOX_ARCHES.length + 1);
    const seen = new Set<boolean>();
    for (const path of files) {
      const ours = readElf(readFileSync(path));
      const oracle = readelf(path);
      expect({ path, bits: ours.bits, machine: MACHINE_NAMES[ours.machine], flags: ours.flags, isStatic: ours.isStatic }).toEqual({
        path,
        bits: oracle.bits,
        machine: oracle.machineName,
        flags: oracle.flags,
        isStatic: oracle.isStatic,
      });
      seen.add(ours.isStatic);
    }
    expect(seen.size).toBe(2); // both a static and a dynamic binary were compared
  });

  test("refuses what is not ELF", () => {
    expect(() => readElf(new TextEncoder().encode("#!/bin/sh\necho not elf, but long enough to have a header......\n"))).toThrow(/not an ELF/);
  });
});

describe("elfMismatch", () => {
  const bytes = async (arch: BusyboxArch) => readFileSync((await ensureBusybox(arch)).path);

  test("accepts each pinned busybox for its own arch only", async () => {
    for (const arch of BUSYBOX_ARCHES) {
      const binary = await bytes(arch);
      for (const other of BUSYBOX_ARCHES) {
        expect({ binary: arch, as: other, ok: elfMismatch(binary, other) === undefined }).toEqual({ binary: arch, as: other, ok: arch === other });
      }
    }
  });

  test("tells armhf from armel by the float ABI", async () => {
    expect(elfMismatch(await bytes("armhf"), "armel")).toMatch(/float ABI/);
    expect(elfMismatch(await bytes("armel"), "armhf")).toMatch(/float ABI/);
  });

  test("refuses a dynamically linked x86-64 binary", () => {
    expect(elfMismatch(readFileSync("/bin/ls"), "amd64")).toMatch(/dynamically linked/);
  });
});
