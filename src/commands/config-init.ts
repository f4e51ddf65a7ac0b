import { defineCommand, renderUsage, type CommandDef } from "citty";
import { DEFAULT_CONFIG_FILE, runConfigInit } from "../config/init.ts";

// Usage text names the full command; this command is loaded lazily and does not know its parent.
const USAGE_PARENT: CommandDef<any> = { meta: { name: "flash-live config" } };

const command = defineCommand({
  meta: { name: "init", description: "Ask for hostname, user, password, SSH keys, Wi-Fi and timezone; write a key=value config file (mode 0600)." },
  args: {
    file: { type: "positional", required: false, default: DEFAULT_CONFIG_FILE, description: "File to write" },
  },
  async run({ args }) {
    await runConfigInit({ file: args.file || DEFAULT_CONFIG_FILE, usage: await renderUsage(command, USAGE_PARENT) });
  },
});

export default command;
