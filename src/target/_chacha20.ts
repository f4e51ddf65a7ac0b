/**
 * chacha20-poly1305@openssh.com for ssh2 under Bun. ssh2 builds that cipher from node:crypto's
 * "chacha20" (OpenSSL's 16-byte IV: 32-bit little-endian block counter, then a 96-bit nonce) plus
 * its own Poly1305, and offers it only if `crypto.getCiphers()` lists "chacha20". Bun's crypto
 * (BoringSSL) has no such cipher, so ssh2 under Bun cannot speak the cipher OpenSSH prefers, which is
 * also the fast one on boards without AES instructions (Raspberry Pi 4 and older; TCG-emulated
 * boards: bench/link.ts measured 9.8 vs 7.9 MiB/s into an L board with OpenSSH).
 *
 * This module adds exactly that name to node:crypto when the runtime lacks it, backed by
 * @noble/ciphers (audited, pure JS, ~360 MiB/s here). Every other cipher still goes to the runtime.
 * It must be evaluated before ssh2's constants.js reads `getCiphers()`: ssh.ts and ssh-auth.ts
 * import it ahead of ssh2. Checked against `openssl enc -chacha20` in tests/target/chacha20.test.ts.
 */
import crypto from "node:crypto";
import { chacha20 } from "@noble/ciphers/chacha.js";

const NAME = "chacha20";
const BLOCK = 64;

/** OpenSSL's "chacha20" as a stream: any split of the input gives the same output as one update. */
export class ChaCha20Stream {
  readonly #key: Uint8Array;
  readonly #nonce: Uint8Array;
  #counter: number;
  /** Keystream left over from the last partial block. */
  #rest: Uint8Array = new Uint8Array(0);

  constructor(key: Uint8Array, iv: Uint8Array) {
    if (key.length !== 32) throw new RangeError(`chacha20: key must be 32 bytes, got ${key.length}`);
    if (iv.length !== 16) throw new RangeError(`chacha20: iv must be 16 bytes, got ${iv.length}`);
    this.#key = Uint8Array.from(key);
    this.#counter = new DataView(iv.buffer, iv.byteOffset, 16).getUint32(0, true);
    this.#nonce = Uint8Array.from(iv.subarray(4));
  }

  update(data: Uint8Array | string, inputEncoding?: BufferEncoding): Buffer {
    const input = typeof data === "string" ? Buffer.from(data, inputEncoding) : data;
    const out = Buffer.allocUnsafe(input.length);
    let i = 0;
    for (; i < input.length && i < this.#rest.length; i++) out[i] = input[i]! ^ this.#rest[i]!;
    this.#rest = this.#rest.subarray(i);
    const whole = Math.floor((input.length - i) / BLOCK) * BLOCK;
    if (whole > 0) {
      chacha20(this.#key, this.#nonce, input.subarray(i, i + whole), out.subarray(i, i + whole), this.#counter);
      this.#advance(whole / BLOCK);
      i += whole;
    }
    if (i < input.length) {
      const ks = chacha20(this.#key, this.#nonce, new Uint8Array(BLOCK), new Uint8Array(BLOCK), this.#counter);
      this.#advance(1);
      const n = input.length - i;
      for (let j = 0; j < n; j++) out[i + j] = input[i + j]! ^ ks[j]!;
      this.#rest = ks.subarray(n);
    }
    return out;
  }

  final(): Buffer {
    return Buffer.alloc(0);
  }

  setAutoPadding(): this {
    return this;
  }

  // SSH never reaches 2^32 blocks (256 GiB) under one key and IV; OpenSSL would carry into the nonce.
  #advance(blocks: number): void {
    const next = this.#counter + blocks;
    if (next > 0xffffffff) throw new RangeError("chacha20: block counter overflow");
    this.#counter = next;
  }
}

/** Adds "chacha20" to node:crypto if the runtime has none. Returns whether it did. */
export function installChaCha20(c: typeof crypto = crypto): boolean {
  if (c.getCiphers().includes(NAME)) return false;
  const { createCipheriv, createDecipheriv, getCiphers } = c;
  const make = (orig: typeof createCipheriv) =>
    function (this: unknown, ...args: Parameters<typeof createCipheriv>) {
      const [algorithm, key, iv] = args;
      if (typeof algorithm === "string" && algorithm.toLowerCase() === NAME) {
        return new ChaCha20Stream(toBytes(key), toBytes(iv)) as unknown as ReturnType<typeof createCipheriv>;
      }
      return orig.apply(this, args);
    };
  c.createCipheriv = make(createCipheriv) as typeof createCipheriv;
  c.createDecipheriv = make(createDecipheriv as unknown as typeof createCipheriv) as unknown as typeof createDecipheriv;
  c.getCiphers = () => [...getCiphers(), NAME].sort();
  return true;
}

function toBytes(v: unknown): Uint8Array {
  if (v instanceof Uint8Array) return v;
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  throw new TypeError("chacha20: key and iv must be bytes");
}

installChaCha20();
