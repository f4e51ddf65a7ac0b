import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { machine } from "node:os";
import { privateTempDir } from "../util/private-tmp.ts";
import { join } from "node:path";
import { Duplex } from "node:stream";

/**
 * A program on this side as a stream stage (e.g. `xz -1 -T0 -c`): what is written goes to its stdin,
 * its stdout is what is read. The stage ends only once the program exited 0, so a failure cannot
 * pass for a complete stream: it fails when the program cannot start or exits non-zero (with its
 * stderr in the message). Destroying the stage kills the program, so a failed copy does not leave it
 * running.
 */
export function spawnFilter(cmd: readonly string[]): Duplex {
  const [file, ...args] = cmd;
  if (!file) throw new Error("spawnFilter: no command");
  const child = spawn(file, args, { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  let exited = false;
  const stage = new Duplex({
    readableHighWaterMark: 1 << 20,
    writableHighWaterMark: 1 << 20,
    write(chunk: Buffer, _enc, cb) {
      if (child.stdin.write(chunk)) cb();
      else child.stdin.once("drain", () => cb());
    },
    final(cb) {
      child.stdin.end(cb);
    },
    read() {
      child.stdout.resume();
    },
    destroy(err, cb) {
      if (!exited) child.kill();
      cb(err);
    },
  });
  child.stdout.on("data", (c: Buffer) => {
    if (!stage.push(c)) child.stdout.pause();
  });
  child.stderr.on("data", (d: Buffer) => {
    if (stderr.length < 4096) stderr += d.toString("utf8");
  });
  // EPIPE when the program died first: its exit status says why.
  child.stdin.on("error", () => {});
  child.on("error", (e) => stage.destroy(new Error(`${file} could not run here: ${e.message}`)));
  child.on("close", (code, signal) => {
    exited = true;
    if (stage.destroyed) return;
    if (code === 0) stage.push(null);
    else stage.destroy(new Error(`${file} ${code === null ? `was killed (${signal})` : `exited with ${code}`}${stderr.trim() ? `: ${stderr.trim()}` : ""}`));
  });
  return stage;
}

/**
 * The encoders this side runs for a transport it makes (src/core/transport.ts), as argv:
 * - xz:  this machine's xz, level 1, all cores (none when xz is not installed);
 * - lzo: `lzop -1` of the static busybox flash-live carries for this machine's own CPU, written
 *        once per run to a private directory (0700) and removed at exit: every Linux host has it.
 */
export async function encoderFor(transport: "xz" | "lzo"): Promise<string[] | undefined> {
  if (transport === "xz") return Bun.which("xz") ? ["xz", "-1", "-T0", "-c", "-q"] : undefined;
  return [await hostBusybox(), "lzop", "-1", "-c"];
}

let hostBusyboxPath: Promise<string> | undefined;

function hostBusybox(): Promise<string> {
  hostBusyboxPath ??= (async () => {
    const { busyboxFor } = await import("../assets/busybox.ts");
    const bytes = await busyboxFor(machine());
    const { dir } = privateTempDir("bin");
    const path = join(dir, "busybox");
    writeFileSync(path, bytes, { mode: 0o700 });
    return path;
  })();
  hostBusyboxPath.catch(() => (hostBusyboxPath = undefined));
  return hostBusyboxPath;
}
