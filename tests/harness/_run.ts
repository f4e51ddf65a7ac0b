/**
 * Running host commands for the harness. Everything here runs on THIS machine, so it only ever
 * touches files under the board cache (image files, qcow2 overlays, chroot trees): never a block
 * device, never a mount of anything but /proc inside a chroot tree being built.
 */
export interface RunOptions {
  cwd?: string;
  env?: Record<string, string>;
  stdin?: string | Uint8Array;
  /** Reject on a non-zero exit (default true). */
  check?: boolean;
  /** Stream the command's output to ours (long build steps), instead of capturing it. */
  inherit?: boolean;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class HarnessCommandError extends Error {
  override name = "HarnessCommandError";
  constructor(
    public readonly argv: readonly string[],
    public readonly code: number,
    public readonly stderr: string,
  ) {
    const tail = stderr.trim().split("\n").slice(-15).join("\n");
    super(`\`${argv.join(" ")}\` exited with ${code}${tail ? `:\n${tail}` : ""}`);
  }
}

export async function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const proc = Bun.spawn([...argv], {
    cwd: opts.cwd,
    env: { ...process.env, LC_ALL: "C", ...opts.env },
    stdin: opts.stdin === undefined ? "ignore" : new Blob([opts.stdin]),
    stdout: opts.inherit ? "inherit" : "pipe",
    stderr: opts.inherit ? "inherit" : "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    opts.inherit ? "" : new Response(proc.stdout as ReadableStream).text(),
    opts.inherit ? "" : new Response(proc.stderr as ReadableStream).text(),
    proc.exited,
  ]);
  if (code !== 0 && opts.check !== false) throw new HarnessCommandError(argv, code, stderr || stdout);
  return { code, stdout, stderr };
}

/** Run in a chroot. The tree is one we built under the cache dir. */
export function chroot(tree: string, argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return run(["chroot", tree, ...argv], {
    ...opts,
    env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", DEBIAN_FRONTEND: "noninteractive", HOME: "/root", ...opts.env },
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Seconds since t0 (performance.now()), one decimal, for the measurements the harness logs. */
export function since(t0: number): number {
  return Math.round((performance.now() - t0) / 100) / 10;
}

export function log(msg: string): void {
  if (process.env.FLASH_LIVE_HARNESS_QUIET) return;
  process.stderr.write(`[harness] ${msg}\n`);
}

/**
 * Hold an exclusive flock(1) on `lockPath` while fn runs: two test processes (or a test and
 * scripts/build-boards.ts) never build or replace the same cached tree/image/snapshot at once.
 * The lock is held by a child `flock ... cat` reading our pipe, so it is released when fn ends
 * or when this process dies (the pipe closes).
 */
export async function withLock<T>(lockPath: string, fn: () => Promise<T>): Promise<T> {
  const holder = Bun.spawn(["flock", "-x", lockPath, "sh", "-c", "echo locked; exec cat >/dev/null"], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "inherit",
  });
  const reader = (holder.stdout as ReadableStream<Uint8Array>).getReader();
  const waitLog = setTimeout(() => log(`waiting for ${lockPath} (another process builds it)`), 2000);
  const first = await reader.read();
  clearTimeout(waitLog);
  reader.releaseLock();
  if (first.done) throw new Error(`could not lock ${lockPath}`);
  try {
    return await fn();
  } finally {
    holder.stdin.end();
    await holder.exited;
  }
}
