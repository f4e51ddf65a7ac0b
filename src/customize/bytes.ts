/**
 * Random-access, synchronous bytes (a FAT library calls back synchronously for sectors). A boot
 * partition is up to 512 MiB but mostly empty, so besides plain arrays there is a sparse store
 * that keeps only the non-zero chunks of a stream: a Raspberry Pi OS bootfs costs its ~80 MB of
 * files, not 512 MiB.
 */
export interface ByteSource {
  readonly size: number;
  /** `length` bytes at `offset` (zeros past the end). May return a view: do not modify it. */
  read(offset: number, length: number): Uint8Array;
}

export type BootBytes = Uint8Array | ByteSource;

export function asByteSource(b: BootBytes): ByteSource {
  if (!(b instanceof Uint8Array)) return b;
  return {
    size: b.length,
    read(offset, length) {
      if (offset + length <= b.length) return b.subarray(offset, offset + length);
      const out = new Uint8Array(length);
      if (offset < b.length) out.set(b.subarray(offset));
      return out;
    },
  };
}

const CHUNK = 64 * 1024;

/** Bytes kept as 64 KiB chunks; all-zero chunks are not stored. */
export class SparseBytes implements ByteSource {
  private readonly chunks = new Map<number, Uint8Array>();
  private pending = new Uint8Array(CHUNK);
  private pendingLen = 0;
  private written = 0;

  constructor(public size: number) {}

  /** Append bytes in order (the next `written` bytes). */
  append(data: Uint8Array): void {
    let p = 0;
    while (p < data.length) {
      const n = Math.min(CHUNK - this.pendingLen, data.length - p);
      this.pending.set(data.subarray(p, p + n), this.pendingLen);
      this.pendingLen += n;
      p += n;
      if (this.pendingLen === CHUNK) this.flushChunk();
    }
  }

  /** Call after the last append. */
  finish(): this {
    if (this.pendingLen > 0) {
      this.pending.fill(0, this.pendingLen);
      this.flushChunk();
    }
    return this;
  }

  /** Bytes held in memory (for reports and tests). */
  get storedBytes(): number {
    return this.chunks.size * CHUNK;
  }

  read(offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    let p = 0;
    while (p < length) {
      const abs = offset + p;
      const idx = Math.floor(abs / CHUNK);
      const within = abs - idx * CHUNK;
      const n = Math.min(CHUNK - within, length - p);
      const chunk = this.chunks.get(idx);
      if (chunk) out.set(chunk.subarray(within, within + n), p);
      p += n;
    }
    return out;
  }

  private flushChunk(): void {
    // A zero chunk's buffer is reused (the next appends overwrite all of it): allocating one per
    // chunk made the garbage of a 512 MiB partition, not its data, set the peak memory.
    if (!isZero(this.pending)) {
      this.chunks.set(this.written / CHUNK, this.pending);
      this.pending = new Uint8Array(CHUNK);
    }
    this.pendingLen = 0;
    this.written += CHUNK;
  }
}

const ZEROS = new Uint8Array(CHUNK);

export function isZero(b: Uint8Array): boolean {
  // Native memcmp against a zero block: boot partitions are mostly zeros.
  for (let p = 0; p < b.length; p += CHUNK) {
    const part = b.subarray(p, Math.min(p + CHUNK, b.length));
    if (Buffer.compare(part, ZEROS.subarray(0, part.length)) !== 0) return false;
  }
  return true;
}
