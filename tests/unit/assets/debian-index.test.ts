// The re-pinning chain InRelease (gpgv) -> Packages.xz (sha256, by-hash) -> .deb (sha256), against a
// loopback mirror signed with a throwaway key: real gpg/gpgv, xz and dpkg-deb, no network.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fetchRelease, findStanza, lookupPackage, releaseSha256, sha256Hex } from "../../../src/assets/_debian-index.ts";
import { downloadBusybox, ensureBusybox } from "../../../src/assets/_fetch-busybox.ts";
import { BUSYBOX_PINS } from "../../../src/assets/busybox.ts";
import { UserError } from "../../../src/errors.ts";

const work = mkdtempSync(join(tmpdir(), "flash-live-mirror-"));
const gnupg = join(work, "gnupg");
const root = join(work, "mirror");
const files = new Map<string, Uint8Array>();
let server: ReturnType<typeof Bun.serve>;
let mirror: string;
let busybox: Uint8Array;
let deb: Uint8Array;
const savedKeyring = process.env.FLASH_LIVE_DEBIAN_KEYRING;

function run(cmd: string[], stdin?: Uint8Array | string): Buffer {
  const proc = Bun.spawnSync(cmd, { env: { ...process.env, GNUPGHOME: gnupg }, stdin: stdin === undefined ? "ignore" : Buffer.from(stdin), stderr: "pipe" });
  if (proc.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${proc.stderr.toString()}`);
  return proc.stdout;
}

const serve = (path: string, bytes: Uint8Array) => files.set(`/debian/${path}`, bytes);
const NEW_VERSION = "1:9.9.9-1";
const DEB_PATH = "pool/main/b/busybox/busybox-static_9.9.9-1_amd64.deb";

function publish(packages: string): string {
  const xz = run(["xz", "-c"], packages);
  const sha = sha256Hex(xz);
  serve(`dists/trixie/main/binary-amd64/by-hash/SHA256/${sha}`, xz);
  const release = `Origin: Test\nCodename: trixie\nAcquire-By-Hash: yes\nSHA256:\n ${"0".repeat(64)} 12 main/binary-arm64/Packages.xz\n ${sha} ${xz.length} main/binary-amd64/Packages.xz\n`;
  serve("dists/trixie/InRelease", run(["gpg", "--batch", "--clearsign", "--local-user", "test@flash-live.invalid"], release));
  return release;
}

let release = "";

beforeAll(async () => {
  mkdirSync(gnupg, { mode: 0o700 });
  run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key", "Test <test@flash-live.invalid>", "ed25519", "sign", "never"]);
  writeFileSync(join(work, "keyring.gpg"), run(["gpg", "--export"]));
  process.env.FLASH_LIVE_DEBIAN_KEYRING = join(work, "keyring.gpg");

  busybox = readFileSync((await ensureBusybox("amd64")).path);
  mkdirSync(join(root, "DEBIAN"), { recursive: true });
  mkdirSync(join(root, "usr/bin"), { recursive: true });
  writeFileSync(join(root, "DEBIAN/control"), `Package: busybox-static\nVersion: ${NEW_VERSION}\nArchitecture: amd64\nMaintainer: t <t@t>\nDescription: t\n`);
  writeFileSync(join(root, "usr/bin/busybox"), busybox);
  run(["dpkg-deb", "--root-owner-group", "-Zxz", "-b", root, join(work, "bb.deb")]);
  deb = readFileSync(join(work, "bb.deb"));
  serve(DEB_PATH, deb);
  release = publish(
    [
      "Package: busybox\nVersion: 1:1.0-1\nFilename: pool/x.deb\nSize: 1\nSHA256: ab\n",
      "Package: busybox-static-extra\nVersion: 0\nFilename: pool/y.deb\nSize: 1\nSHA256: cd\n",
      `Package: busybox-static\nSource: busybox (1:9.9.9-1)\nVersion: ${NEW_VERSION}\nDescription: rescue shell\n multi-line\nFilename: ${DEB_PATH}\nSize: ${deb.length}\nSHA256: ${sha256Hex(deb)}\n`,
    ].join("\n"),
  );

  server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch: (request) => {
      const body = files.get(new URL(request.url).pathname);
      return body ? new Response(body) : new Response("not found", { status: 404 });
    },
  });
  mirror = `http://127.0.0.1:${server.port}/debian`;
});

afterAll(() => {
  server?.stop(true);
  Bun.spawnSync(["gpgconf", "--kill", "gpg-agent"], { env: { ...process.env, GNUPGHOME: gnupg } });
  rmSync(work, { recursive: true, force: true });
  if (savedKeyring === undefined) delete process.env.FLASH_LIVE_DEBIAN_KEYRING;
  else process.env.FLASH_LIVE_DEBIAN_KEYRING = savedKeyring;
});

describe("the signed chain", () => {
  test("InRelease verified by gpgv yields exactly the signed Release text", async () => {
    expect(await fetchRelease(mirror, "trixie", true)).toEqual({ text: release, verified: true });
  });

  test("Packages.xz by hash -> the busybox-static stanza -> a .deb that passes every check", async () => {
    const found = await lookupPackage(mirror, "trixie", await fetchRelease(mirror, "trixie", true), "amd64", "busybox-static");
    expect(found).toEqual({ version: NEW_VERSION, filename: DEB_PATH, size: deb.length, sha256: sha256Hex(deb), verified: true });
    const { binary } = await downloadBusybox("amd64", found!, mirror);
    expect(Buffer.from(binary).equals(busybox)).toBe(true);
  });

  test("a tampered InRelease is rejected", async () => {
    const good = files.get("/debian/dists/trixie/InRelease")!;
    files.set("/debian/dists/trixie/InRelease", Buffer.from(Buffer.from(good).toString().replace("Origin: Test", "Origin: Evil")));
    try {
      await expect(fetchRelease(mirror, "trixie", false)).rejects.toThrow(/gpgv rejected/);
    } finally {
      files.set("/debian/dists/trixie/InRelease", good);
    }
  });

  test("a Packages.xz that differs from the signed sha256 is rejected", async () => {
    const signed = await fetchRelease(mirror, "trixie", true);
    const { sha256 } = releaseSha256(signed.text).get("main/binary-amd64/Packages.xz")!;
    const path = `/debian/dists/trixie/main/binary-amd64/by-hash/SHA256/${sha256}`;
    const good = files.get(path)!;
    files.set(path, run(["xz", "-c"], "Package: busybox-static\nVersion: 6.6.6\n"));
    try {
      await expect(lookupPackage(mirror, "trixie", signed, "amd64", "busybox-static")).rejects.toThrow(/does not match the sha256/);
    } finally {
      files.set(path, good);
    }
  });

  test("without the keyring, --update-pins refuses instead of trusting an unsigned index", async () => {
    process.env.FLASH_LIVE_DEBIAN_KEYRING = join(work, "missing.gpg");
    try {
      await expect(fetchRelease(mirror, "trixie", true)).rejects.toThrow(/cannot verify/);
      expect((await fetchRelease(mirror, "trixie", false)).verified).toBe(false);
    } finally {
      process.env.FLASH_LIVE_DEBIAN_KEYRING = join(work, "keyring.gpg");
    }
  });
});

describe("a pinned version gone from the mirror", () => {
  test("fails with the current version and sha256 from the signed index and how to re-pin", async () => {
    const error = await downloadBusybox("amd64", BUSYBOX_PINS.amd64, mirror).catch((e) => e);
    expect(error).toBeInstanceOf(UserError);
    expect(error.message).toContain(`busybox-static ${BUSYBOX_PINS.amd64.version} for amd64 is no longer on ${mirror}`);
    expect(error.hint).toContain(`now has ${NEW_VERSION}: ${DEB_PATH}, ${deb.length} bytes, sha256 ${sha256Hex(deb)} (InRelease signature checked)`);
    expect(error.hint).toContain("bun scripts/fetch-busybox.ts --update-pins");
  });

  test("a .deb whose sha256 differs from the pin is refused", async () => {
    const pin = { version: NEW_VERSION, filename: DEB_PATH, size: deb.length, sha256: "f".repeat(64) };
    await expect(downloadBusybox("amd64", pin, mirror)).rejects.toThrow(/does not match its pin/);
  });
});

describe("index parsing", () => {
  test("findStanza matches the exact package name only", () => {
    const text = "Package: a-b\nVersion: 1\n\nPackage: a\nVersion: 2\nSHA256: x\n\nPackage: a\nVersion: 3\n";
    expect(findStanza(text, "a")?.get("Version")).toBe("2");
    expect(findStanza(text, "a-b")?.get("Version")).toBe("1");
    expect(findStanza(text, "b")).toBeUndefined();
  });

  test("releaseSha256 reads only the SHA256 section", () => {
    const text = `MD5Sum:\n ${"1".repeat(32)} 5 main/x\nSHA256:\n ${"2".repeat(64)} 7 main/x\nOther: y\n`;
    expect([...releaseSha256(text)]).toEqual([["main/x", { sha256: "2".repeat(64), size: 7 }]]);
  });
});

