/**
 * The local adapter: the same Target, run on the board itself (`flash-live flash --local`).
 * Commands are argv for child_process (no shell); `root` adds `sudo -n --` when not uid 0.
 */
import { spawn as spawnChild } from "node:child_process";
import { hostname, userInfo } from "node:os";
import { RemoteCommandError } from "../errors.ts";
import { shellJoin } from "../util/shell.ts";
import { execVia } from "./_exec.ts";
import { putVia } from "./_put.ts";
import { explainSudoFailure } from "./_sudo.ts";
import type { RemoteProcess, SpawnOptions, Target } from "./types.ts";

export function createLocalTarget(): Target {
  const name = "local";
  const spawn = (argv: readonly string[], opts: SpawnOptions = {}): Promise<RemoteProcess> => {
    if (argv.length === 0) throw new Error("spawn: empty argv");
    const full = opts.root && process.getuid?.() !== 0 ? ["sudo", "-n", "--", ...argv] : [...argv];
    return new Promise((resolve, reject) => {
      const child = spawnChild(full[0]!, full.slice(1), {
        stdio: ["pipe", "pipe", "pipe"],
        env: opts.env ? { ...process.env, ...opts.env } : process.env,
      });
      const exited = new Promise<number | null>((res) => {
        child.once("close", (code) => res(typeof code === "number" && code >= 0 ? code : null));
      });
      child.once("error", (e: NodeJS.ErrnoException) => {
        // Only a failure to start lands here before 'spawn'; report it like a shell would (127).
        reject(new RemoteCommandError(shellJoin(full), 127, `${full[0]}: ${e.code === "ENOENT" ? "not found" : e.message}`, name));
      });
      child.once("spawn", () =>
        resolve({
          stdin: child.stdin!,
          stdout: child.stdout!,
          stderr: child.stderr!,
          exited,
          kill: () => void child.kill("SIGKILL"),
        }),
      );
    });
  };
  return {
    name,
    kind: "local",
    host: hostname(),
    spawn,
    async exec(argv, opts = {}) {
      try {
        return await execVia(() => spawn(argv, opts), argv, name, opts);
      } catch (e) {
        throw opts.root ? explainSudoFailure(e, name, userInfo().username) : e;
      }
    },
    put: (path, data, opts) => putVia(spawn, name, path, data, opts),
    async close() {},
  };
}
