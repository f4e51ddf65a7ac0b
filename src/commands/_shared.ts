import type { ArgsDef } from "citty";

/** Flags shared by `flash` and `check` (they run the same preflight). */
export const targetArgs = {
  local: { type: "boolean", description: "Run on the board itself (as root), no SSH" },
  config: { type: "string", alias: "c", description: "Config file: flash-live.config.ts/json/yaml, or the seed's key=value .conf" },
  ramfs: { type: "boolean", description: "Copy the whole image into the board's RAM, check it, then write (remote default)" },
  stream: { type: "boolean", description: "Write the image while it arrives (for boards with little RAM)" },
  port: { type: "string", alias: "p", description: "SSH port (default: from ~/.ssh/config, else 22)" },
  identity: { type: "string", alias: "i", description: "SSH private key file" },
  "ssh-config": { type: "string", description: "ssh config file (default ~/.ssh/config)" },
  "known-hosts": { type: "string", description: "known_hosts file (default ~/.ssh/known_hosts)" },
  "accept-new-host-key": { type: "boolean", description: "Accept and remember an unknown host key, and the board's new key after the flash" },
  "customize-with": { type: "string", description: "cloud-init | firstrun (default: chosen from the image)" },
  bmap: { type: "boolean", default: true, description: "Write only the ranges in the image's block map (IMAGE.bmap next to it) when there is one (--no-bmap: every byte)" },
  "bmap-file": { type: "string", description: "Block map made by `bmaptool create`, if not next to the image" },
  transport: { type: "string", description: "auto (measure, default) | as-is (the file's bytes) | gzip (gzip -1 made here) | lzo (lzop -1 made here) | xz (xz -1 made here) | raw (decompressed here)" },
} as const satisfies ArgsDef;

/** Only the flags the user actually typed become the flag layer (citty fills defaults in). */
export function setFlags(args: Record<string, unknown>, rawArgs: string[]): Record<string, unknown> {
  const typed = new Set(rawArgs.filter((a) => a.startsWith("-")).map((a) => a.replace(/^--?(no-)?/, "").split("=")[0]));
  const out: Record<string, unknown> = {};
  const map: Record<string, string> = {
    ramfs: "mode",
    stream: "mode",
    "accept-new-host-key": "acceptNewHostKey",
    "customize-with": "customizeWith",
    "known-hosts": "knownHostsFile",
    "ssh-config": "sshConfigFile",
    identity: "identityFile",
    i: "identityFile",
    verify: "verify",
    record: "record",
    bmap: "bmap",
    "bmap-file": "bmapFile",
    transport: "transport",
    yes: "yes",
    y: "yes",
    hostname: "hostname",
    user: "user",
    timezone: "timezone",
    "wifi-ssid": "wifiSsid",
    "wifi-country": "wifiCountry",
  };
  for (const name of typed) {
    const key = map[name!];
    if (!key) continue;
    if (name === "ramfs" && args.ramfs) out.mode = "ramfs";
    else if (name === "stream" && args.stream) out.mode = "stream";
    else if (name === "i") out.identityFile = args.identity;
    else if (name === "y") out.yes = args.yes;
    else out[key] = args[name!];
  }
  return out;
}
