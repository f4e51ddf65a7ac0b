import { dirname, resolve } from "node:path";
import { defineCommand } from "citty";
import { loadFlashConfig, toConfOrigins } from "../config/load.ts";
import { flash } from "../core/run-flash.ts";
import { UserError } from "../errors.ts";
import { setFlags, targetArgs } from "./_shared.ts";

export default defineCommand({
  meta: { name: "flash", description: "Re-flash a running board: flash-live flash HOST IMAGE, or flash-live flash --local IMAGE" },
  args: {
    target: { type: "positional", required: false, description: "HOST (user@host, host:port or a ~/.ssh/config alias); with --local: the IMAGE" },
    image: { type: "positional", required: false, description: "IMAGE (.img, .img.gz, .img.xz, .img.zst)" },
    ...targetArgs,
    yes: { type: "boolean", alias: "y", description: "Do not ask for the confirmation phrase (scripts)" },
    verify: { type: "boolean", default: true, description: "Read every byte back before the reboot (--no-verify to skip)" },
    record: { type: "boolean", default: true, description: "Leave flash-live.txt (image, sha256, verify result) on the new boot partition (--no-record: image bytes only)" },
  },
  async run({ args, rawArgs }) {
    const local = Boolean(args.local);
    const positionals = [args.target, args.image].filter(Boolean) as string[];
    const [destination, imagePath] = local ? [undefined, positionals[0]] : [positionals[0], positionals[1]];
    if (!imagePath || (local && positionals.length > 1)) {
      throw new UserError("Missing or extra arguments.", "Usage: flash-live flash HOST IMAGE   or   flash-live flash --local IMAGE", 2);
    }
    if (args.ramfs && args.stream) throw new UserError("--ramfs and --stream exclude each other.", undefined, 2);
    const loaded = await loadFlashConfig({ cwd: process.cwd(), configFile: args.config, flags: setFlags(args, rawArgs) });
    const configDir = loaded.files.length ? dirname(loaded.files.at(-1)!) : process.cwd();
    await flash({
      local,
      destination,
      port: args.port ? Number(args.port) : undefined,
      imagePath: resolve(imagePath),
      config: loaded.config,
      origins: toConfOrigins(loaded),
      configDir,
    });
  },
});
