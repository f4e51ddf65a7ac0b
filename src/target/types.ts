import type { Readable, Writable } from "node:stream";

/**
 * Everything that touches the board goes through a Target (STYLE.md "One Target, two adapters").
 * Commands are argv arrays; adapters quote them (src/util/shell.ts), callers never do.
 */
export interface SpawnOptions {
  /** Run as root: the adapter prefixes `sudo -n --` when it is not root already. */
  root?: boolean;
  /** Environment for the command. Over SSH these are exported in the command line, so never secrets. */
  env?: Record<string, string>;
}

export interface ExecOptions extends SpawnOptions {
  /** Bytes written to stdin, then stdin is closed. Without it stdin is closed at once. */
  stdin?: string | Uint8Array;
  /** Called with each stdout chunk as it arrives (progress lines). */
  onStdout?: (chunk: string) => void;
  /** Reject with RemoteCommandError on a non-zero exit (default true). */
  check?: boolean;
}

export interface ExecResult {
  /** Exit status; null when the command died by a signal or the connection dropped. */
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RemoteProcess {
  stdin: Writable;
  stdout: Readable;
  stderr: Readable;
  /** Resolves with the exit status (null: signal or lost connection). Never rejects. */
  exited: Promise<number | null>;
  /** Best effort: end the command (closes the channel / kills the child). */
  kill(): void;
}

export interface Target {
  /** "local", or "user@host:port" for SSH: used in messages and in the confirmation phrase. */
  readonly name: string;
  readonly kind: "local" | "ssh";
  /** The host name as the user typed it (remote), or the board's hostname (local). */
  readonly host: string;
  spawn(argv: readonly string[], opts?: SpawnOptions): Promise<RemoteProcess>;
  exec(argv: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  /**
   * Write a file on the target from bytes or a stream, as root when asked. mode is octal text ("0600").
   * Implementations stream (constant memory) and create the file with the mode before any byte lands.
   */
  put(path: string, data: Uint8Array | string | Readable, opts?: { mode?: string; root?: boolean; onProgress?: (bytes: number) => void }): Promise<void>;
  close(): Promise<void>;
}
