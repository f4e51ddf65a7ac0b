import { consola } from "consola";
import { RemoteCommandError, UserError } from "../errors.ts";

/** The one place that prints a failure and chooses the exit code (STYLE.md "Errors and output"). */
export function reportError(error: unknown): number {
  if (error instanceof UserError) {
    consola.error(error.message);
    if (error.hint) consola.info(error.hint);
    return error.exitCode;
  }
  if (error instanceof RemoteCommandError) {
    consola.error(error.message);
    return 1;
  }
  consola.error("flash-live hit a bug; please report it with this output:");
  console.error(error);
  return 70;
}
