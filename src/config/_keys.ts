import { CONF_KEYS, type FlashLiveConfig } from "./schema.ts";

export type ConfigKey = keyof FlashLiveConfig;

/** How a value of each key is read from text (env, flags, rc files) and checked in every layer. */
export type KeyKind = "string" | "boolean" | "list" | readonly string[];

// `satisfies Record<ConfigKey, ...>` makes a key added to schema.ts fail the typecheck here until it
// is given a kind, so no key silently skips validation, env or flags.
export const KEY_KINDS = {
  hostname: "string",
  user: "string",
  password: "string",
  passwordHash: "string",
  sshKeys: "list",
  wifiSsid: "string",
  wifiPassword: "string",
  wifiCountry: "string",
  timezone: "string",
  keyboardLayout: "string",
  locale: "string",
  sshPasswordAuth: "boolean",
  keepHostKeys: "boolean",
  mode: ["auto", "ramfs", "stream"],
  customizeWith: ["auto", "cloud-init", "firstrun"],
  services: "list",
  plugins: "list",
  verify: "boolean",
  record: "boolean",
  transport: ["auto", "as-is", "gzip", "lzo", "xz", "raw"],
  bmap: "boolean",
  bmapFile: "string",
  acceptNewHostKey: "boolean",
  knownHostsFile: "string",
  sshConfigFile: "string",
  identityFile: "string",
  yes: "boolean",
} as const satisfies Record<ConfigKey, KeyKind>;

export const CONFIG_KEYS = Object.keys(KEY_KINDS) as ConfigKey[];

/** Masked in `check --explain` output and refused as flags (they would land in `ps` and shell history). */
export const SECRET_KEYS: ReadonlySet<ConfigKey> = new Set<ConfigKey>(["password", "passwordHash", "wifiPassword"]);

/** `wifiSsid` -> `FLASH_LIVE_WIFI_SSID`. */
export function envName(key: ConfigKey): string {
  return `FLASH_LIVE_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

/** `wifiSsid` -> `wifi-ssid` (the citty flag and the kebab spelling accepted in config files). */
export function kebabName(key: ConfigKey): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

const BY_SPELLING = new Map<string, ConfigKey>();
for (const key of CONFIG_KEYS) {
  BY_SPELLING.set(key, key);
  BY_SPELLING.set(kebabName(key), key);
}
// The seed's own spellings (`ssh-key`, repeatable) are accepted in every file format.
for (const [conf, key] of Object.entries(CONF_KEYS)) BY_SPELLING.set(conf, key);

/** A key as written in a file or flag map (camelCase, kebab-case or a seed spelling), or undefined if unknown. */
export function canonicalKey(spelling: string): ConfigKey | undefined {
  return BY_SPELLING.get(spelling);
}

/** Every spelling of a key, for finding its line in a file. */
export function spellingsOf(key: ConfigKey): string[] {
  return [...BY_SPELLING].filter(([, k]) => k === key).map(([s]) => s);
}
