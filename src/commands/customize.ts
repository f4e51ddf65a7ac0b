import { resolve } from "node:path";
import { defineCommand } from "citty";
import { loadFlashConfig, toConfOrigins } from "../config/load.ts";
import type { CustomizeWith } from "../config/schema.ts";
import { customizeImageFile } from "../customize/image-file.ts";
import { UserError } from "../errors.ts";
import { setFlags } from "./_shared.ts";

export default defineCommand({
  meta: {
    name: "customize",
    description: "Write a customized copy of an image file (for flashing SD cards with other tools): customize IMAGE --config FILE -o OUT",
  },
  args: {
    image: { type: "positional", required: false, description: "Image: raw .img, .img.gz, .img.xz or .img.zst" },
    config: { type: "string", alias: "c", description: "Config file (the seed's key=value .conf, or flash-live.config.*)" },
    out: { type: "string", alias: "o", description: "Output image: raw unless it ends in .gz or .zst" },
    "customize-with": { type: "string", description: "cloud-init | firstrun (default: chosen from the image)" },
  },
  async run({ args, rawArgs }) {
    if (!args.image || !args.out) {
      throw new UserError("customize needs an image and an output file.", "Usage: flash-live customize IMAGE --config FILE -o OUT", 2);
    }
    const loaded = await loadFlashConfig({ cwd: process.cwd(), configFile: args.config, flags: setFlags(args, rawArgs) });
    const r = await customizeImageFile({
      image: resolve(args.image),
      out: resolve(args.out),
      config: loaded.config,
      origin: toConfOrigins(loaded),
      customizeWith: (loaded.config.customizeWith ?? "auto") as CustomizeWith,
    });
    console.log(`${args.out}: ${r.outputFormat} image, ${r.imageBytes} bytes`);
    console.log(`customized: ${r.summary}`);
    console.log(`how: ${r.choice.reason}; the new system mounts the boot partition at ${r.inspection.bootDirOnImage}`);
    console.log(`files: ${r.files.map((f) => f.path).join(", ")}${r.cmdlineAppend ? `; cmdline.txt += ${r.cmdlineAppend}` : ""}`);
  },
});
