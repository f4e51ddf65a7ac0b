/**
 * The three kinds of failure flash-live reports (STYLE.md "Errors and output"):
 * - UserError: the user can fix it; printed as message + hint, no stack.
 * - RemoteCommandError: a command on the target failed; printed with command, exit code, stderr tail.
 * - anything else is a bug and is printed with its stack.
 */
export class UserError extends Error {
  override name = "UserError";
  constructor(
    message: string,
    /** What to do about it, one or two sentences. */
    public readonly hint?: string,
    /** Process exit code. 2 = usage / missing input, 1 = refused or failed. */
    public readonly exitCode = 1,
  ) {
    super(message);
  }
}

export class RemoteCommandError extends Error {
  override name = "RemoteCommandError";
  constructor(
    public readonly command: string,
    public readonly code: number | null,
    public readonly stderr: string,
    public readonly target: string,
  ) {
    const tail = stderr.trim().split("\n").slice(-8).join("\n");
    super(`on ${target}: \`${command}\` exited with ${code ?? "no status (connection lost?)"}${tail ? `:\n${tail}` : ""}`);
  }
}

/** The user pressed Ctrl-C at a prompt. */
export class CancelledError extends UserError {
  override name = "CancelledError";
  constructor() {
    super("Cancelled.", undefined, 1);
  }
}
