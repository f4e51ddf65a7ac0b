/**
 * Bun's collector lets short-lived buffers made at tens of MB/s (decoded image chunks, encoder output,
 * encrypted SSH packets) pile up: a flash of a 320 MiB image reached 286 MB of RSS, a `check` of a
 * 1 GiB one 244 MB, and early (eden) collections did not help; full ones did (~10 ms each here).
 * `collector(every, minMs)` returns a counter of bytes moved that runs a full collection after every
 * `every` bytes, at most one per `minMs` (a fast stream then loses a bounded share of this thread).
 *
 * The count is the process's, not the caller's: garbage is, and two streams at once (the image pass
 * and the boot partition edit each decode the image) would otherwise each leave their full `every`
 * behind. Every collector adds to one shared count and any collection clears it.
 */
export interface GcPool {
  moved: number;
  last: number;
}

const processPool: GcPool = { moved: 0, last: Number.NEGATIVE_INFINITY };

export function collector(every: number, minMs = 0, gc: () => void = () => Bun.gc(true), pool: GcPool = processPool): (bytes: number) => void {
  return (bytes) => {
    pool.moved += bytes;
    if (pool.moved < every) return;
    const now = performance.now();
    if (now - pool.last < minMs) return;
    pool.moved = 0;
    pool.last = now;
    gc();
  };
}
