/**
 * Bun's collector lets short-lived buffers made at tens of MB/s (decoded image chunks, encoder output,
 * encrypted SSH packets) pile up: a flash of a 320 MiB image reached 286 MB of RSS, a `check` of a
 * 1 GiB one 244 MB, and early (eden) collections did not help; full ones did (~10 ms each here).
 * `collector(every, minMs)` returns a counter of bytes moved that runs a full collection after every
 * `every` bytes, at most one per `minMs` (a fast stream then loses a bounded share of this thread).
 */
export function collector(every: number, minMs = 0, gc: () => void = () => Bun.gc(true)): (bytes: number) => void {
  let n = 0;
  let last = Number.NEGATIVE_INFINITY;
  return (bytes) => {
    n += bytes;
    if (n < every) return;
    const now = performance.now();
    if (now - last < minMs) return;
    n = 0;
    last = now;
    gc();
  };
}
