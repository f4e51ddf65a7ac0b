// The ar/tar/.deb reader against the real tools that write those formats: GNU ar, GNU tar, dpkg-deb.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { extractFromDeb, readAr, readTar } from "../../../src/assets/_deb.ts";
import { ensureBusybox } from "../../../src/assets/_fetch-busybox.ts";
import { BUSYBOX_ARCHES } from "../../../src/assets/busybox.ts";

const work = mkdtempSync(join(tmpdir(), "flash-live-deb-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function run(cmd: string[], cwd = work): Buffer {
  const proc = Bun.spawnSync(cmd, { cwd, stderr: "pipe" });
  if (proc.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${proc.stderr.toString()}`);
  return proc.stdout;
}

function randomBytes(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i += 65536) crypto.getRandomValues(bytes.subarray(i, Math.min(length, i + 65536)));
  return bytes;
}

describe("readAr", () => {
  test("reads every member of a GNU ar archive, odd sizes included", () => {
    const dir = join(work, "ar");
    mkdirSync(dir);
    const files = { "debian-binary": new TextEncoder().encode("2.0\n"), odd: randomBytes(1001), empty: new Uint8Array(), even: randomBytes(4096) };
    for (const [name, data] of Object.entries(files)) writeFileSync(join(dir, name), data);
    run(["ar", "rc", "t.a", ...Object.keys(files)], dir);
    const members = readAr(readFileSync(join(dir, "t.a")));
    expect(members.map((m) => m.name)).toEqual(Object.keys(files));
    for (const member of members) expect(Buffer.from(member.data).equals(Buffer.from(files[member.name as keyof typeof files]))).toBe(true);
  });

  test("refuses what is not an ar archive, and truncated members", () => {
    expect(() => readAr(new TextEncoder().encode("PK\x03\x04 not ar"))).toThrow(/not an ar archive/);
    const dir = join(work, "ar-trunc");
    mkdirSync(dir);
    writeFileSync(join(dir, "big"), randomBytes(5000));
    run(["ar", "rc", "t.a", "big"], dir);
    expect(() => readAr(readFileSync(join(dir, "t.a")).subarray(0, 3000))).toThrow(/truncated/);
  });
});

describe("readTar", () => {
  const longDir = `${"d".repeat(90)}/${"e".repeat(60)}`; // > 100 chars: needs ustar prefix, GNU L or pax
  const longName = `${longDir}/${"f".repeat(80)}.bin`;
  const tree = join(work, "tree");
  mkdirSync(join(tree, longDir), { recursive: true });
  const small = randomBytes(777);
  const large = randomBytes(300_000);
  const unicode = new TextEncoder().encode("grüße\n");
  writeFileSync(join(tree, "small"), small);
  writeFileSync(join(tree, longName), large);
  writeFileSync(join(tree, "grüße-ü.txt"), unicode);
  symlinkSync("small", join(tree, "link"));

  for (const format of ["ustar", "gnu", "pax"]) {
    test(`matches GNU tar --format=${format}`, () => {
      const members = format === "ustar" ? ["./small", `./${longDir}/`, "./link"] : ["./small", `./${longName}`, "./grüße-ü.txt", "./link"];
      const tar = run(["tar", "-c", `--format=${format}`, "--no-recursion", "-C", tree, ...members]);
      const entries = readTar(tar);
      expect(entries.map((e) => e.path)).toEqual(members.map((m) => m.slice(2)));
      expect(Buffer.from(entries[0]!.data).equals(Buffer.from(small))).toBe(true);
      const link = entries.find((e) => e.path === "link")!;
      expect([link.type, link.linkName]).toEqual(["2", "small"]);
      if (format !== "ustar") {
        expect(Buffer.from(entries[1]!.data).equals(Buffer.from(large))).toBe(true);
        expect(new TextDecoder().decode(entries[2]!.data)).toBe("grüße\n");
      } else {
        expect(entries[1]!.type).toBe("5");
      }
    });
  }

  test("ustar splits a long path into prefix and name", () => {
    // ustar can hold the long file name only via the prefix field (path <= 255, name part <= 100).
    const name = `${longDir}/short.bin`;
    writeFileSync(join(tree, name), small);
    const entries = readTar(run(["tar", "-c", "--format=ustar", "-C", tree, name]));
    expect(entries.at(-1)!.path).toBe(name);
    expect(Buffer.from(entries.at(-1)!.data).equals(Buffer.from(small))).toBe(true);
  });
});

describe("extractFromDeb", () => {
  const payload = randomBytes(200_003);
  for (const compression of ["xz", "zstd", "gzip", "none"]) {
    test(`pulls usr/bin/busybox out of a dpkg-deb -Z${compression} package`, async () => {
      const root = join(work, `pkg-${compression}`);
      mkdirSync(join(root, "DEBIAN"), { recursive: true });
      mkdirSync(join(root, "usr/bin"), { recursive: true });
      writeFileSync(join(root, "DEBIAN/control"), "Package: fake\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n");
      writeFileSync(join(root, "usr/bin/busybox"), payload);
      writeFileSync(join(root, "usr/bin/other"), "other\n");
      run(["dpkg-deb", "--root-owner-group", `-Z${compression}`, "-b", root, `${root}.deb`]);
      const deb = readFileSync(`${root}.deb`);
      const member = readAr(deb).find((m) => m.name.startsWith("data.tar"))!;
      expect(member.name).toBe({ xz: "data.tar.xz", zstd: "data.tar.zst", gzip: "data.tar.gz", none: "data.tar" }[compression]!);
      const got = await extractFromDeb(deb, ["usr/bin/busybox", "bin/busybox"]);
      expect(Buffer.from(got!).equals(Buffer.from(payload))).toBe(true);
      expect(await extractFromDeb(deb, ["/bin/busybox"])).toBeUndefined();
    });
  }

  test("refuses an ar archive without data.tar", async () => {
    const dir = join(work, "nodata");
    mkdirSync(dir);
    writeFileSync(join(dir, "debian-binary"), "2.0\n");
    run(["ar", "rc", "x.deb", "debian-binary"], dir);
    await expect(extractFromDeb(readFileSync(join(dir, "x.deb")), ["usr/bin/busybox"])).rejects.toThrow(/no data.tar/);
  });

  // The real packages: our extraction must equal dpkg-deb's, byte for byte.
  for (const arch of BUSYBOX_ARCHES) {
    test(`the pinned busybox-static ${arch} .deb extracts like dpkg-deb`, async () => {
      const { path } = await ensureBusybox(arch);
      const debPath = join(path, "../busybox-static.deb");
      const oracle = join(work, `real-${arch}`);
      run(["dpkg-deb", "-x", debPath, oracle]);
      const deb = readFileSync(debPath);
      const ours = await extractFromDeb(deb, ["usr/bin/busybox", "bin/busybox"]);
      expect(Buffer.from(ours!).equals(readFileSync(join(oracle, "usr/bin/busybox")))).toBe(true);
      expect(Buffer.from(ours!).equals(readFileSync(path))).toBe(true);
    });
  }
});
