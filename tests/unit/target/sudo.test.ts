import { expect, test } from "bun:test";
import { RemoteCommandError, UserError } from "../../../src/errors.ts";
import { explainSudoFailure } from "../../../src/target/_sudo.ts";

// stderr lines as sudo 1.9 (Debian 12) prints them with -n.
const cases: [number, string, string | null][] = [
  [1, "sudo: a password is required\n", "needs a password"],
  [1, "sudo: a terminal is required to read the password; either use the -S option to read from standard input or configure an askpass helper\n", "needs a password"],
  [127, "sh: 1: sudo: not found\n", "sudo is not installed"],
  [1, "pi is not in the sudoers file.  This incident will be reported.\n", "may not use sudo"],
  [1, "cat: /x: No such file or directory\n", null],
];
for (const [code, stderr, want] of cases) {
  test(stderr.trim().slice(0, 40), () => {
    const e = new RemoteCommandError("sudo -n -- cat /x", code, stderr, "pi@board:22");
    const out = explainSudoFailure(e, "pi@board:22", "pi");
    if (want === null) expect(out).toBe(e);
    else {
      expect(out).toBeInstanceOf(UserError);
      expect((out as UserError).message).toContain(want);
    }
  });
}
