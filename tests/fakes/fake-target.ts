import { PassThrough, Readable } from "node:stream";
import { execVia } from "../../src/target/_exec.ts";
import type { RemoteProcess, Target } from "../../src/target/types.ts";
import { shellJoin } from "../../src/util/shell.ts";

export interface FakeReply {
  stdout?: string;
  stderr?: string;
  code?: number;
}

export interface FakeCall {
  argv: string[];
  command: string;
  root: boolean;
  stdin: string;
}

/**
 * The test seam (STYLE.md): a Target that records every command and answers from a table keyed by
 * the quoted command line (or a function). Unknown commands exit 127 so a test sees what it missed.
 */
export function createFakeTarget(replies: Record<string, FakeReply> | ((call: FakeCall) => FakeReply | undefined) = {}): Target & {
  calls: FakeCall[];
  files: Map<string, { data: Buffer; mode?: string }>;
} {
  const calls: FakeCall[] = [];
  const files = new Map<string, { data: Buffer; mode?: string }>();
  const answer = (call: FakeCall): FakeReply =>
    (typeof replies === "function" ? replies(call) : replies[call.command]) ?? { code: 127, stderr: `fake: no reply for ${call.command}` };
  const t = {
    name: "fake",
    kind: "ssh" as const,
    host: "fake",
    calls,
    files,
    async spawn(argv: readonly string[], opts: { root?: boolean } = {}): Promise<RemoteProcess> {
      const call: FakeCall = { argv: [...argv], command: shellJoin(argv), root: Boolean(opts.root), stdin: "" };
      calls.push(call);
      const stdin = new PassThrough();
      const stdout = new PassThrough();
      const stderr = new PassThrough();
      const exited = new Promise<number | null>((resolve) => {
        const chunks: Buffer[] = [];
        stdin.on("data", (c: Buffer) => chunks.push(c));
        stdin.on("end", () => {
          call.stdin = Buffer.concat(chunks).toString("utf8");
          const r = answer(call);
          stdout.end(r.stdout ?? "");
          stderr.end(r.stderr ?? "");
          resolve(r.code ?? 0);
        });
      });
      return { stdin, stdout, stderr, exited, kill() {} };
    },
    exec(argv: readonly string[], opts = {}) {
      return execVia(() => t.spawn(argv, opts), argv, "fake", opts);
    },
    async put(path: string, data: Uint8Array | string | Readable, opts: { mode?: string } = {}) {
      const chunks: Buffer[] = [];
      if (data instanceof Readable) for await (const c of data) chunks.push(Buffer.from(c));
      else chunks.push(Buffer.from(data));
      files.set(path, { data: Buffer.concat(chunks), mode: opts.mode });
    },
    async close() {},
  };
  return t;
}
