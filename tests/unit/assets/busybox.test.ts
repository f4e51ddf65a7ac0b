import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cachedBusyboxPath, ensureBusybox } from "../../../src/assets/_fetch-busybox.ts";
import { elfMismatch } from "../../../src/assets/_elf.ts";
import { BUSYBOX_ARCHES, REQUIRED_APPLETS, busyboxArchFor, busyboxFor, type BusyboxArch } from "../../../src/assets/busybox.ts";
import { UserError } from "../../../src/errors.ts";

const MACHINES: Record<string, BusyboxArch> = {
  x86_64: "amd64",
  aarch64: "arm64",
  armv7l: "armhf",
  armv8l: "armhf",
  armv6l: "armel",
  armv5tel: "armel",
  riscv64: "riscv64",
};

describe("busyboxArchFor", () => {
  test("maps uname -m to the Debian architecture that runs there", () => {
    for (const [machine, arch] of Object.entries(MACHINES)) expect([machine, busyboxArchFor(machine)]).toEqual([machine, arch]);
    expect(busyboxArchFor("aarch64\n")).toBe("arm64"); // straight from `uname -m` output
  });

  for (const machine of ["i686", "mips", "ppc64le", "s390x", ""]) {
    test(`refuses "${machine}" with a UserError naming it and what is supported`, () => {
      let error: unknown;
      try {
        busyboxArchFor(machine);
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(UserError);
      expect((error as UserError).message).toContain(`"${machine}"`);
      expect((error as UserError).hint).toContain("x86_64, aarch64, armv7l");
    });
  }
});

describe("busyboxFor", () => {
  for (const [machine, arch] of Object.entries(MACHINES)) {
    test(`${machine}: the pinned ${arch} busybox`, async () => {
      const bytes = await busyboxFor(machine);
      await ensureBusybox(arch);
      expect(Buffer.from(bytes).equals(readFileSync(cachedBusyboxPath(arch)))).toBe(true);
      expect(elfMismatch(bytes, arch)).toBeUndefined();
    });
  }

  test("unknown machine rejects with a UserError", async () => {
    await expect(busyboxFor("sparc64")).rejects.toBeInstanceOf(UserError);
  });
});

// Real runs of the pinned binaries (natively or under qemu-user): the applets the target side uses exist,
// and the armel/armhf split is what an ARMv6 CPU needs.
const QEMU: Record<BusyboxArch, string[]> = {
  amd64: [],
  arm64: ["qemu-aarch64-static"],
  armhf: ["qemu-arm-static"],
  armel: ["qemu-arm-static"],
  riscv64: ["qemu-riscv64-static"],
};

function runBusybox(arch: BusyboxArch, args: string[], cpu?: string) {
  const path = cachedBusyboxPath(arch);
  const prefix = QEMU[arch].length && cpu ? [...QEMU[arch], "-cpu", cpu] : QEMU[arch];
  return Bun.spawnSync([...prefix, path, ...args], { stderr: "pipe" });
}

describe("pinned busybox binaries", () => {
  for (const arch of BUSYBOX_ARCHES) {
    test(`${arch} has every applet flash-live relies on`, async () => {
      await ensureBusybox(arch);
      const proc = runBusybox(arch, ["--list"]);
      expect(proc.exitCode).toBe(0);
      const applets = new Set(proc.stdout.toString().split("\n"));
      expect(REQUIRED_APPLETS.filter((a) => !applets.has(a))).toEqual([]);
    });
  }

  test("armel runs on an ARMv6 CPU (arm1176, Pi Zero/1) where armhf dies with SIGILL", async () => {
    await ensureBusybox("armel");
    await ensureBusybox("armhf");
    const dir = mkdtempSync(join(tmpdir(), "flash-live-bb-"));
    try {
      writeFileSync(join(dir, "in"), "hello\n");
      const script = `sha256sum ${join(dir, "in")} | cut -c1-16`;
      const armel = runBusybox("armel", ["sh", "-c", script], "arm1176");
      expect([armel.exitCode, armel.stdout.toString()]).toEqual([0, "5891b5b522d5df08\n"]);
      const armhf = runBusybox("armhf", ["sh", "-c", script], "arm1176");
      expect(armhf.signalCode ?? armhf.exitCode).not.toBe(0);
      const armhfOnV7 = runBusybox("armhf", ["sh", "-c", script], "cortex-a7");
      expect([armhfOnV7.exitCode, armhfOnV7.stdout.toString()]).toEqual([0, "5891b5b522d5df08\n"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
