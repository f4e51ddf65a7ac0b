import { busyboxFor } from "../assets/busybox.ts";
import { RemoteCommandError } from "../errors.ts";
import type { RemoteProcess, Target } from "../target/types.ts";

/**
 * Runs on the board while flash-live fills a directory in /dev/shm (the helper's work dir, the
 * measurement's probe dir): creates it, then waits on its stdin. flash-live writes "keep" when the
 * helper is about to own the dir. Any other end of stdin (flash-live done with a probe, or killed by
 * any signal, or the link lost: sshd closes the session's pipes) removes the dir, so an interrupted
 * run leaves nothing in /dev/shm even when flash-live itself cannot clean up.
 */
export const DIR_GUARD_SCRIPT = ['mkdir -m 700 -- "$1" || exit 1', "echo ready", "read -r word", '[ "$word" = keep ] || rm -rf -- "$1"'].join("\n");

export async function startDirGuard(t: Target, dir: string, opts: { root: boolean }): Promise<RemoteProcess> {
  const g = await t.spawn(["sh", "-c", DIR_GUARD_SCRIPT, "sh", dir], { root: opts.root });
  g.stdin.on("error", () => {});
  let out = "";
  let err = "";
  g.stderr.on("data", (c: Buffer) => (err += c.toString("utf8")));
  const ready = await new Promise<boolean>((resolve) => {
    g.stdout.on("data", (c: Buffer) => {
      out += c.toString("utf8");
      if (out.includes("ready\n")) resolve(true);
    });
    g.exited.then(() => resolve(false));
  });
  if (!ready) throw new RemoteCommandError(`mkdir -m 700 ${dir}`, await g.exited, err, t.name);
  return g;
}

/** The helper owns the dir from now on. */
export async function keepDir(g: RemoteProcess): Promise<void> {
  g.stdin.end("keep\n");
  await g.exited;
}

/** Remove the dir (and end the guard). */
export async function dropDir(g: RemoteProcess): Promise<void> {
  g.stdin.end();
  await g.exited;
}

/**
 * A guarded dir with the static busybox for the board's arch in it (the helper's work dir as root,
 * the measurement's probe dir as the user); on a failed copy the dir is dropped again.
 */
export async function startBusyboxDir(t: Target, dir: string, arch: string, opts: { root: boolean; onDirMade?: () => void }): Promise<RemoteProcess> {
  const guard = await startDirGuard(t, dir, opts);
  opts.onDirMade?.();
  try {
    await t.put(`${dir}/busybox`, await busyboxFor(arch), { mode: "0700", root: opts.root });
  } catch (e) {
    await dropDir(guard).catch(() => {});
    throw e;
  }
  return guard;
}
