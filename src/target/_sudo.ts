import { RemoteCommandError, UserError } from "../errors.ts";

/**
 * A root command run through `sudo -n` that failed because of sudo itself becomes a UserError
 * saying what to change; any other failure is returned unchanged.
 */
export function explainSudoFailure(e: unknown, target: string, loginUser: string): unknown {
  if (!(e instanceof RemoteCommandError)) return e;
  const err = e.stderr;
  if (/sudo: (a )?password is required|sudo: a terminal is required/.test(err)) {
    return new UserError(
      `On ${target}, ${loginUser} is not root and \`sudo -n\` needs a password, so flash-live cannot run commands as root.`,
      `Log in as root, or allow ${loginUser} passwordless sudo (e.g. \`${loginUser} ALL=(ALL) NOPASSWD: ALL\` in /etc/sudoers.d/).`,
    );
  }
  if (e.code === 127 && /sudo: (command )?not found|sudo: No such file/.test(err)) {
    return new UserError(`On ${target}, ${loginUser} is not root and sudo is not installed.`, "Log in as root, or install sudo on the board.");
  }
  if (/is not in the sudoers file|may not run sudo|not allowed to execute/.test(err)) {
    return new UserError(`On ${target}, ${loginUser} may not use sudo.`, `Log in as root, or give ${loginUser} sudo rights (NOPASSWD).`);
  }
  return e;
}
