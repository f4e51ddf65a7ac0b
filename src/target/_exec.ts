import { RemoteCommandError } from "../errors.ts";
import { shellJoin } from "../util/shell.ts";
import type { ExecOptions, ExecResult, RemoteProcess } from "./types.ts";

/** exec() in terms of spawn(), shared by both adapters. */
export async function execVia(
  spawn: () => Promise<RemoteProcess>,
  argv: readonly string[],
  targetName: string,
  opts: ExecOptions = {},
): Promise<ExecResult> {
  const p = await spawn();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  p.stdout.on("data", (c: Buffer) => {
    out.push(c);
    opts.onStdout?.(c.toString("utf8"));
  });
  p.stderr.on("data", (c: Buffer) => err.push(c));
  p.stdin.on("error", () => {}); // EPIPE when the command does not read its stdin
  if (opts.stdin !== undefined) p.stdin.end(opts.stdin);
  else p.stdin.end();
  const code = await p.exited;
  // Let the stream 'data' events that raced the exit drain.
  await Promise.all([ended(p.stdout), ended(p.stderr)]);
  const res = { code, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") };
  if (code !== 0 && opts.check !== false) throw new RemoteCommandError(shellJoin(argv), code, res.stderr, targetName);
  return res;
}

function ended(s: NodeJS.ReadableStream): Promise<void> {
  return new Promise((resolve) => {
    const r = s as NodeJS.ReadableStream & { readableEnded?: boolean; destroyed?: boolean };
    if (r.readableEnded || r.destroyed) return resolve();
    s.once("end", () => resolve());
    s.once("close", () => resolve());
    setTimeout(resolve, 2000);
  });
}
