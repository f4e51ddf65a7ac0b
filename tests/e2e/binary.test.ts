// The shipped binaries (npm run build -> dist/): they start, on x64 natively and on arm64 under
// qemu-user, ignore .env/bunfig.toml in the user's directory, and carry every pinned busybox in a form
// busyboxFor() can read back from the compiled binary's virtual filesystem.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { cachedBusyboxPath } from "../../src/assets/_fetch-busybox.ts";
import { EM, elfMismatch, readElf } from "../../src/assets/_elf.ts";
import { BUSYBOX_ARCHES, busyboxArchFor } from "../../src/assets/busybox.ts";
import pkg from "../../package.json" with { type: "json" };
import { makeDiskImage } from "../unit/customize/_images.ts";
import { startBoard } from "../harness/board.ts";
import { UserHome } from "./_flash-live.ts";

const ROOT = resolve(import.meta.dir, "../..");
const TARGETS = ["x64", "arm64"] as const;
type Target = (typeof TARGETS)[number];
const binary = (target: Target) => join(ROOT, `dist/flash-live-linux-${target}`);
// The arm64 runtime is a glibc program: qemu-user needs the arm64 loader and libc (libc6-arm64-cross).
const RUNNER: Record<Target, string[]> = { x64: [], arm64: ["qemu-aarch64-static", "-L", "/usr/aarch64-linux-gnu"] };
const MACHINES = ["x86_64", "aarch64", "armv7l", "armv6l", "riscv64"];
// Explicit: bunfig's [test] timeout is not applied to every run; arm64 cases run under qemu-user (~1 s each).
const BUILD_TIMEOUT = 600_000;
const RUN_TIMEOUT = 120_000;

function sh(cmd: string[], options: { cwd?: string; env?: Record<string, string> } = {}) {
  const proc = Bun.spawnSync(cmd, { cwd: options.cwd ?? ROOT, env: { ...process.env, ...options.env }, stdout: "pipe", stderr: "pipe" });
  return { code: proc.exitCode, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() };
}

function mustRun(cmd: string[], env?: Record<string, string>): void {
  const result = sh(cmd, { env });
  if (result.code !== 0) throw new Error(`${cmd.join(" ")} failed (${result.code}):\n${result.stdout}${result.stderr}`);
}

/** Newest mtime among everything a build reads. */
function newestInput(): number {
  const paths = ["package.json", "package-lock.json", "scripts/build.sh", "scripts/fetch-busybox.ts"].map((p) => join(ROOT, p));
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else paths.push(path);
    }
  };
  walk(join(ROOT, "src"));
  return Math.max(...paths.filter(existsSync).map((p) => statSync(p).mtimeMs));
}

beforeAll(() => {
  // Assets first: it only rewrites what changed, so it does not by itself make dist/ look stale.
  mustRun(["node_modules/.bin/bun", "scripts/fetch-busybox.ts"]);
  const stale = TARGETS.filter((t) => !existsSync(binary(t)) || statSync(binary(t)).mtimeMs < newestInput());
  if (stale.length) mustRun(["bash", "scripts/build.sh", ...stale]);
}, BUILD_TIMEOUT);

describe.each(TARGETS)("dist/flash-live-linux-%s", (target) => {
  const run = (args: string[], cwd?: string) => sh([...RUNNER[target], binary(target), ...args], { cwd });

  test("is an ELF for its platform", () => {
    const elf = readElf(readFileSync(binary(target)).subarray(0, 65536));
    expect([elf.bits, elf.machine]).toEqual([64, target === "x64" ? EM.X86_64 : EM.AARCH64]);
  }, RUN_TIMEOUT);

  test("--version prints the package version", () => {
    const result = run(["--version"]);
    expect([result.code, result.stdout.trim()]).toEqual([0, pkg.version]);
  }, RUN_TIMEOUT);

  test("check --help shows the usage of check and exits 0", () => {
    const result = run(["check", "--help"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("flash-live check");
    expect(result.stdout).toContain("IMAGE");
  }, RUN_TIMEOUT);

  test("ignores .env and bunfig.toml in the current directory", () => {
    const dir = mkdtempSync(join(tmpdir(), "flash-live-cwd-"));
    try {
      writeFileSync(join(dir, "preload.ts"), 'console.log("BUNFIG-PRELOAD-RAN");\n');
      writeFileSync(join(dir, "bunfig.toml"), 'preload = ["./preload.ts"]\n');
      writeFileSync(join(dir, ".env"), "NODE_OPTIONS=--this-would-break\nFLASH_LIVE_HOST=from-dotenv\n");
      const result = run(["--version"], dir);
      expect([result.code, result.stdout.trim()]).toEqual([0, pkg.version]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, RUN_TIMEOUT);

  // The partition table (partitioninfo/mbr) and the FAT edit (js-fatfs wasm) inside the binary: Bun's
  // --minify-identifiers once broke the mbr library there ("Not implemented"), so local flashes and
  // `customize` failed only in the shipped binary.
  test("customize: reads the partition table and edits the FAT boot partition", () => {
    const dir = mkdtempSync(join(tmpdir(), "flash-live-bin-customize-"));
    try {
      const disk = makeDiskImage(dir, { table: "dos", sizeMiB: 40, bootSizeMiB: 33, files: { "cmdline.txt": "console=tty1 root=/dev/mmcblk0p2\n" } });
      writeFileSync(join(dir, "boat.conf"), "hostname=binary-boat\n");
      const out = join(dir, "out.img");
      const result = run(["customize", disk.path, "--config", join(dir, "boat.conf"), "-o", out], dir);
      if (result.code !== 0) console.error(result.stdout, result.stderr);
      expect(result.code).toBe(0);
      const files = sh(["mdir", "-b", "-i", `${out}@@${disk.bootOffset}`, "::"]).stdout;
      expect(files).toContain("::/firstrun.sh");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, RUN_TIMEOUT);

  test("embeds every pinned busybox byte for byte", () => {
    const bytes = readFileSync(binary(target));
    for (const arch of BUSYBOX_ARCHES) {
      const busybox = readFileSync(cachedBusyboxPath(arch));
      expect({ arch, embedded: bytes.indexOf(busybox) !== -1 }).toEqual({ arch, embedded: true });
    }
  }, RUN_TIMEOUT);
});

// ssh2 inside the binary: it must be loaded after the chacha20 shim there too (src/target/_ssh2.ts), or
// the binary silently falls back to AES and boards without AES instructions pay for it.
describe("dist/flash-live-linux-x64 over SSH", () => {
  test("check on a booted board: logs in through ~/.ssh/config and negotiates chacha20-poly1305", async () => {
    const board = await startBoard({ image: "L" });
    const home = new UserHome();
    try {
      await home.trustBoard(board);
      const r = await home.run(["check", "board", "--json"], { cli: [binary("x64")], timeoutMs: 240_000 });
      if (r.code !== 0) console.error(r.stdout, r.stderr);
      expect(r.code).toBe(0);
      const doc = JSON.parse(r.stdout);
      expect(doc.target).toMatchObject({ name: `pi@board:${board.sshPort}`, reachable: true, cipher: "chacha20-poly1305@openssh.com" });
      expect(doc.board.arch).toBe("x86_64");
    } finally {
      await board.stop();
      home.cleanup();
    }
  }, 300_000);
});

// busyboxFor() inside a compiled binary, with no cache and no mirror reachable: the bytes can only come
// from the embedded files. A small probe entry built by the same script and flags as dist/.
describe("busyboxFor in a compiled binary", () => {
  const work = mkdtempSync(join(tmpdir(), "flash-live-probe-"));
  const probe = join(work, "probe");

  beforeAll(() => {
    writeFileSync(
      join(work, "probe.ts"),
      `import { busyboxFor } from ${JSON.stringify(join(ROOT, "src/assets/busybox.ts"))};\n` +
        "const [machine, out] = process.argv.slice(2);\nawait Bun.write(out!, await busyboxFor(machine!));\n",
    );
    mustRun(["bash", "scripts/build.sh"], { FLASH_LIVE_BUILD_ENTRY: join(work, "probe.ts"), FLASH_LIVE_BUILD_OUT: probe });
  }, BUILD_TIMEOUT);
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  test.each(TARGETS)("%s: every machine's busybox reads back intact and is a static ELF for it", (target) => {
    const env = { XDG_CACHE_HOME: join(work, "empty-cache"), FLASH_LIVE_DEBIAN_MIRROR: "http://127.0.0.1:9/debian" };
    for (const machine of MACHINES) {
      const out = join(work, `${target}-${machine}`);
      const result = sh([...RUNNER[target], `${probe}-linux-${target}`, machine, out], { cwd: work, env });
      expect({ machine, code: result.code, stderr: result.stderr }).toEqual({ machine, code: 0, stderr: "" });
      const arch = busyboxArchFor(machine);
      const bytes = readFileSync(out);
      expect(elfMismatch(bytes, arch)).toBeUndefined();
      expect(bytes.equals(readFileSync(cachedBusyboxPath(arch)))).toBe(true);
    }
    expect(existsSync(join(work, "empty-cache"))).toBe(false); // nothing was fetched
  }, RUN_TIMEOUT);

  test("an unknown machine is refused inside the binary too", () => {
    const result = sh([`${probe}-linux-x64`, "mips", join(work, "never")], { cwd: work });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('no busybox for target architecture "mips"');
  });
});
