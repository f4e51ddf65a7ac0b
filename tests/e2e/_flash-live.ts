import { mkdtempSync, rmSync, writeFileSync, mkdirSync, copyFileSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Board } from "../harness/board.ts";

const CLI = resolve(import.meta.dir, "../../src/cli.ts");
const BUN = process.execPath;

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  seconds: number;
}

/**
 * A developer's machine in a folder: HOME with ~/.ssh/config naming the board `board`, its key, and
 * a known_hosts that knows the board's current host key. flash-live runs as a user runs it: the CLI
 * in a child process, reading only that HOME.
 */
export class UserHome {
  readonly dir = mkdtempSync(join(tmpdir(), "flash-live-home-"));
  constructor() {
    mkdirSync(join(this.dir, ".ssh"), { mode: 0o700 });
  }

  /** ~/.ssh/config for the board (user: the board's default unless given; more IdentityFile lines), key, known_hosts. */
  async trustBoard(board: Board, alias = "board", opts: { user?: string; identities?: string[] } = {}): Promise<void> {
    const key = join(this.dir, ".ssh", "id_ed25519");
    copyFileSync(board.keyPath, key);
    chmodSync(key, 0o600);
    writeFileSync(
      join(this.dir, ".ssh", "config"),
      `Host ${alias}\n  HostName 127.0.0.1\n  Port ${board.sshPort}\n  User ${opts.user ?? board.user}\n  IdentityFile ~/.ssh/id_ed25519\n${(opts.identities ?? []).map((i) => `  IdentityFile ${i}\n`).join("")}`,
      { mode: 0o600 },
    );
    writeFileSync(join(this.dir, ".ssh", "known_hosts"), `${await board.knownHostsLine()}\n`, { mode: 0o600 });
  }

  path(...p: string[]): string {
    return join(this.dir, ...p);
  }

  /** Runs flash-live from source, or `opts.cli` (e.g. a compiled binary) instead. */
  async run(args: string[], opts: { env?: Record<string, string>; cwd?: string; timeoutMs?: number; onOutput?: (s: string) => void; cli?: string[] } = {}): Promise<CliResult> {
    const t0 = performance.now();
    const proc = Bun.spawn([...(opts.cli ?? [BUN, CLI]), ...args], {
      cwd: opts.cwd ?? this.dir,
      env: { PATH: process.env.PATH!, HOME: this.dir, FLASH_LIVE_HARNESS: "1", CI: "true", ...opts.env },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    const timer = setTimeout(() => proc.kill(), opts.timeoutMs ?? 900_000);
    const collect = async (s: ReadableStream<Uint8Array>) => {
      let out = "";
      const dec = new TextDecoder();
      for await (const c of s) {
        const t = dec.decode(c, { stream: true });
        out += t;
        opts.onOutput?.(t);
        if (process.env.FLASH_LIVE_E2E_VERBOSE) process.stderr.write(t);
      }
      return out;
    };
    const [stdout, stderr, code] = await Promise.all([collect(proc.stdout), collect(proc.stderr), proc.exited]);
    clearTimeout(timer);
    return { code, stdout, stderr, seconds: (performance.now() - t0) / 1000 };
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
