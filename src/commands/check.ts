import { dirname, resolve } from "node:path";
import { defineCommand } from "citty";
import { formatSources, loadFlashConfig, toConfOrigins } from "../config/load.ts";
import { check, formatCheck } from "../core/run-check.ts";
import { UserError } from "../errors.ts";
import { setFlags, targetArgs } from "./_shared.ts";

export default defineCommand({
  meta: { name: "check", description: "Dry preflight: every check of flash, nothing changed. check HOST [IMAGE], or check --local [IMAGE]" },
  args: {
    target: { type: "positional", required: false, description: "HOST; with --local: the IMAGE" },
    image: { type: "positional", required: false, description: "IMAGE to check against the board" },
    ...targetArgs,
    json: { type: "boolean", description: "Print one JSON document (schema in README)" },
    explain: { type: "boolean", description: "Also show which config layer gave each value" },
  },
  async run({ args, rawArgs }) {
    const local = Boolean(args.local);
    const positionals = [args.target, args.image].filter(Boolean) as string[];
    const [destination, imagePath] = local ? [undefined, positionals[0]] : [positionals[0], positionals[1]];
    if (!local && !destination) throw new UserError("No host given.", "Usage: flash-live check HOST [IMAGE]   or   flash-live check --local [IMAGE]", 2);
    const loaded = await loadFlashConfig({ cwd: process.cwd(), configFile: args.config, flags: setFlags(args, rawArgs) });
    const report = await check({
      local,
      destination,
      port: args.port ? Number(args.port) : undefined,
      imagePath: imagePath ? resolve(imagePath) : undefined,
      config: loaded.config,
      origins: toConfOrigins(loaded),
      configDir: loaded.files.length ? dirname(loaded.files.at(-1)!) : process.cwd(),
    });
    if (args.json) console.log(JSON.stringify(report, null, 2));
    else {
      console.log(formatCheck(report));
      if (args.explain) console.log(`\nconfiguration:\n${formatSources(loaded)}`);
    }
    if (!report.ok) process.exitCode = 1;
  },
});
