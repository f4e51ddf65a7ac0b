// The chacha20 that ssh2 gets under Bun (src/target/_chacha20.ts), against OpenSSL's own
// `openssl enc -chacha20` (the cipher ssh2 was written for) as the oracle.
import { describe, expect, test } from "bun:test";
import crypto, { randomBytes } from "node:crypto";
import { spawnSync } from "node:child_process";
import { ChaCha20Stream, installChaCha20 } from "../../../src/target/_chacha20.ts";

function openssl(key: Buffer, iv: Buffer, data: Buffer): Buffer {
  const r = spawnSync("openssl", ["enc", "-chacha20", "-K", key.toString("hex"), "-iv", iv.toString("hex")], { input: data });
  if (r.status !== 0) throw new Error(r.stderr.toString());
  return r.stdout;
}

describe("chacha20 equals openssl enc -chacha20", () => {
  const cases: [string, number, number[]][] = [
    ["one block-aligned update", 4096, [4096]],
    ["ssh2's shapes: 4-byte length, 32-byte Poly1305 key, a packet", 32_781, [32_781]],
    ["odd splits carry the keystream across updates", 10_000, [1, 63, 64, 65, 3, 500, 9304]],
    ["empty input", 0, [0]],
  ];
  for (const [name, size, splits] of cases) {
    test(name, () => {
      for (const counter of [0, 1, 0xffff0000]) {
        const key = randomBytes(32);
        const iv = randomBytes(16);
        iv.writeUInt32LE(counter, 0);
        const data = randomBytes(size);
        const s = new ChaCha20Stream(key, iv);
        const parts: Buffer[] = [];
        let off = 0;
        for (const n of splits) {
          parts.push(s.update(data.subarray(off, off + n)));
          off += n;
        }
        parts.push(s.final());
        expect(Buffer.concat(parts).equals(openssl(key, iv, data))).toBe(true);
      }
    });
  }

  test("through node:crypto, as ssh2 calls it; decipher inverts it; other ciphers untouched", () => {
    expect(crypto.getCiphers()).toContain("chacha20");
    expect(installChaCha20()).toBe(false); // already there: installed once, on import
    const key = randomBytes(32);
    const iv = randomBytes(16);
    const data = randomBytes(1000);
    const enc = crypto.createCipheriv("chacha20" as never, key, iv).update(data);
    expect(enc.equals(openssl(key, iv, data))).toBe(true);
    expect(crypto.createDecipheriv("chacha20" as never, key, iv).update(enc).equals(data)).toBe(true);
    const gcm = crypto.createCipheriv("aes-128-gcm", randomBytes(16), randomBytes(12));
    expect(typeof gcm.getAuthTag).toBe("function");
  });

  test("bad key and iv sizes are refused", () => {
    expect(() => new ChaCha20Stream(new Uint8Array(16), new Uint8Array(16))).toThrow(/key must be 32 bytes/);
    expect(() => new ChaCha20Stream(new Uint8Array(32), new Uint8Array(12))).toThrow(/iv must be 16 bytes/);
  });

  test("the block counter does not wrap silently", () => {
    const iv = Buffer.alloc(16);
    iv.writeUInt32LE(0xffffffff, 0);
    const s = new ChaCha20Stream(randomBytes(32), iv);
    expect(() => s.update(Buffer.alloc(128))).toThrow(/counter overflow/);
  });
});
