import { formatBytes } from "../image/source.ts";

/**
 * Progress with speed and ETA. On a TTY one line is redrawn; elsewhere (CI logs, pipes) a plain line
 * is printed every few seconds so logs stay readable.
 */
export interface Progress {
  update(done: number): void;
  finish(message?: string): void;
}

/** `extra`: text appended to each line (what else goes on meanwhile). */
export function createProgress(label: string, total: number | undefined, out: NodeJS.WriteStream = process.stderr, extra?: () => string): Progress {
  const tty = Boolean(out.isTTY) && process.env.CI !== "true";
  const start = performance.now();
  let last = Number.NEGATIVE_INFINITY; // the first update always shows (performance.now() starts near 0)
  let lastDone = 0;
  // Speed over a sliding window so a stall shows up quickly.
  const window: [number, number][] = [];
  const render = (done: number, now: number) => {
    window.push([now, done]);
    while (window.length > 2 && now - window[0]![0] > 5000) window.shift();
    const [t0, d0] = window[0]!;
    // One sample is no speed: nothing shown rather than "0 B/s" (the first line of every bar).
    const speed = window.length > 1 && now > t0 ? ((done - d0) / (now - t0)) * 1000 : undefined;
    const pct = total ? ` ${((done / total) * 100).toFixed(0).padStart(3)}%` : "";
    const eta = total && speed ? `  ETA ${fmtDuration((total - done) / speed)}` : "";
    const rate = speed === undefined ? "" : `  ${formatBytes(speed)}/s`;
    return `${label}${pct}  ${formatBytes(done)}${total ? ` / ${formatBytes(total)}` : ""}${rate}${eta}${extra?.() ?? ""}`;
  };
  return {
    update(done) {
      lastDone = done;
      const now = performance.now();
      if (now - last < (tty ? 200 : 5000)) return;
      last = now;
      const line = render(done, now);
      out.write(tty ? `\r\x1b[2K${line}` : `${line}\n`);
    },
    finish(message) {
      const secs = (performance.now() - start) / 1000;
      const avg = secs > 0 ? lastDone / secs : 0;
      const line = message ?? `${label}  ${formatBytes(lastDone)} in ${fmtDuration(secs)} (${formatBytes(avg)}/s)`;
      out.write(tty ? `\r\x1b[2K${line}\n` : `${line}\n`);
    },
  };
}

export function fmtDuration(secs: number): string {
  if (!Number.isFinite(secs)) return "?";
  const s = Math.round(secs);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}
