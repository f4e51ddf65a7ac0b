#!/usr/bin/env bun
import { defineCommand, renderUsage, runCommand, showUsage } from "citty";
import pkg from "../package.json" with { type: "json" };
import { reportError } from "./core/report.ts";
import { exitOnSignals } from "./util/private-tmp.ts";

export const main = defineCommand({
  meta: {
    name: "flash-live",
    version: pkg.version,
    description: "Re-flash a running Linux board with a new disk image and bring it back configured.",
  },
  subCommands: {
    flash: () => import("./commands/flash.ts").then((m) => m.default),
    check: () => import("./commands/check.ts").then((m) => m.default),
    config: () => import("./commands/config.ts").then((m) => m.default),
    customize: () => import("./commands/customize.ts").then((m) => m.default),
  },
});

/** citty's runMain exits 1 on everything and prints stacks; usage errors exit 2 here, user errors print a hint. */
async function run(rawArgs: string[]): Promise<number> {
  try {
    if (rawArgs.length === 1 && (rawArgs[0] === "--version" || rawArgs[0] === "-v")) {
      console.log(pkg.version);
      return 0;
    }
    if (rawArgs.includes("--help") || rawArgs.includes("-h") || rawArgs.length === 0) {
      const { resolveSubCommand } = await import("./core/_citty.ts");
      const [cmd, parent] = await resolveSubCommand(main, rawArgs);
      await showUsage(cmd, parent);
      return rawArgs.length === 0 ? 2 : 0;
    }
    await runCommand(main, { rawArgs });
    // A command that refuses without throwing (check) sets process.exitCode itself.
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (error) {
    if (error instanceof Error && error.name === "CLIError") {
      const { resolveSubCommand } = await import("./core/_citty.ts");
      const [cmd, parent] = await resolveSubCommand(main, rawArgs);
      console.error(await renderUsage(cmd, parent));
      console.error(`\n${error.message}`);
      return 2;
    }
    return reportError(error);
  }
}

if (import.meta.main) {
  // A signal ends the run through process exit, so what this side made (src/util/private-tmp.ts) is
  // removed. On the board nothing depends on this process: a lost session drops what was staged, and
  // a helper past its point of no return finishes on its own.
  exitOnSignals();
  const code = await run(process.argv.slice(2));
  process.exitCode = code;
  // A failed run has nothing left to finish: a stray handle (a decompressor, a socket) must not keep
  // the process alive after the error was reported.
  if (code !== 0) setTimeout(() => process.exit(code), 2000).unref();
}
