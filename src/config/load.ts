/**
 * Config layers, lowest first (README "Config layers"):
 *
 *   default < file < env < flag
 *
 * - file: `--config FILE` (the seed's key=value `.conf`, detected by extension or content, or any
 *   format c12 reads: .ts .js .mjs .json .yaml ...), else what c12 finds in cwd:
 *   `flash-live.config.{ts,js,mjs,json,yaml,...}` over `.flashliverc` (rc9 key=value).
 * - env: `FLASH_LIVE_<KEY>` (FLASH_LIVE_HOSTNAME, FLASH_LIVE_WIFI_PASSWORD, FLASH_LIVE_SSH_KEYS, ...).
 *   Empty variables count as unset. Lists: newline-separated if the value has newlines, else
 *   comma-separated. Booleans: true/false, yes/no, 1/0, on/off.
 * - flag: the citty args the user actually set, by config key (camelCase or kebab-case). Secrets
 *   (password, password-hash, wifi-password) are refused here: they would show in `ps` and history.
 *
 * Scalars: the highest layer that sets a key wins.
 * Lists (sshKeys, services, plugins): a higher layer REPLACES the list, unless every item starts
 * with `+`: then its items are APPENDED (duplicates skipped). An empty list clears. E.g.
 *   file `services: ["myapp"]`, env `FLASH_LIVE_SERVICES=+db-*`  ->  ["myapp", "db-*"]
 *   file `services: ["myapp"]`, env `FLASH_LIVE_SERVICES=db-*`   ->  ["db-*"]
 * (defu, c12's default merger, would concatenate arrays; the merge here is our own.)
 * Services listed here are stopped in addition to the ones plugins add (the built-in `halos`
 * plugin adds the seed's list; `plugins: ["!halos"]` turns it off).
 */
import { CONFIG_KEYS, envName, canonicalKey, kebabName, KEY_KINDS, SECRET_KEYS, type ConfigKey } from "./_keys.ts";
import { coerceValue, describeSource, mergeLayers, type ConfigSources, type ItemSources, type LayerEntry } from "./_merge.ts";
import type { ConfOrigins } from "./seed-conf.ts";
import { anchorPluginPath, loadFileLayers } from "./_file-layer.ts";
import { UserError } from "../errors.ts";
import type { FlashLiveConfig } from "./schema.ts";

export { defineFlashLiveConfig } from "./_define-config.ts";
export type { ConfigLayerName, ConfigSource, ConfigSources, ItemSources } from "./_merge.ts";
export { envName, SECRET_KEYS } from "./_keys.ts";

export const FLASH_LIVE_DEFAULTS: Readonly<FlashLiveConfig> = Object.freeze({
  mode: "auto",
  customizeWith: "auto",
  verify: true,
  record: true,
  transport: "auto",
  bmap: true,
  keepHostKeys: false,
  acceptNewHostKey: false,
  yes: false,
  services: [],
  plugins: [],
});

/** FLASH_LIVE_* variables that are not config keys and must not be reported as typos. */
export const RESERVED_ENV: ReadonlySet<string> = new Set(["FLASH_LIVE_HARNESS", "FLASH_LIVE_DEBUG"]);

export interface LoadFlashConfigOptions {
  cwd: string;
  /** `--config FILE`; when given, no config file is searched for in cwd. */
  configFile?: string;
  /** Default: process.env. */
  env?: Record<string, string | undefined>;
  /** Flags the user actually set (citty args), by config key; other keys (positionals, `_`) are ignored. */
  flags?: Record<string, unknown>;
}

export interface LoadedFlashConfig {
  config: FlashLiveConfig;
  /** Which layer gave each key's value. */
  sources: ConfigSources;
  /** For lists (sshKeys, services, plugins): where each item came from (appended lists mix layers). */
  itemSources: ItemSources;
  /** Config files read, lowest first (empty if none). */
  files: string[];
  /** E.g. an unknown FLASH_LIVE_* variable (a likely typo). */
  warnings: string[];
}

export async function loadFlashConfig(options: LoadFlashConfigOptions): Promise<LoadedFlashConfig> {
  const { cwd } = options;
  const env = options.env ?? process.env;
  const warnings: string[] = [];

  const defaults: LayerEntry[] = Object.entries(FLASH_LIVE_DEFAULTS).map(([key, value]) => ({
    key: key as ConfigKey,
    value,
    source: { layer: "default" },
  }));
  const files = await loadFileLayers(cwd, options.configFile);
  const envLayer = readEnvLayer(env, cwd, warnings);
  const flagLayer = readFlagLayer(options.flags ?? {}, cwd);

  const { config, sources, itemSources } = mergeLayers([defaults, ...files.map((f) => f.entries), envLayer, flagLayer]);
  return { config, sources, itemSources, files: files.map((f) => f.file), warnings };
}

/**
 * The origins resolveCustomization (src/customize/resolve.ts) wants: `key` and `sshKeys.N` ->
 * { file, line } for values that came from a config file, so its errors say FILE:LINE and relative
 * ssh-key paths are taken relative to the file that names them. Values from env, flags or
 * defaults are left out (their paths are relative to cwd).
 */
export function toConfOrigins(loaded: Pick<LoadedFlashConfig, "sources" | "itemSources">): ConfOrigins {
  const out: ConfOrigins = {};
  for (const [key, s] of Object.entries(loaded.sources)) if (s?.layer === "file" && s.file) out[key] = { file: s.file, line: s.line };
  for (const [key, items] of Object.entries(loaded.itemSources))
    items?.forEach((s, i) => {
      if (s.layer === "file" && s.file) out[`${key}.${i}`] = { file: s.file, line: s.line };
    });
  return out;
}

/**
 * `check --explain`: one line per set key: key, value (secrets masked), where it came from
 * (`default`, `FILE:LINE`, `env FLASH_LIVE_X`, `flag --x`; appended lists name every layer).
 */
export function formatSources(loaded: Pick<LoadedFlashConfig, "config" | "sources">): string {
  const rows: [string, string, string][] = [];
  for (const key of CONFIG_KEYS) {
    const value = loaded.config[key];
    if (value === undefined) continue;
    const source = loaded.sources[key];
    rows.push([key, displayValue(key, value), source ? describeSource(source) : "?"]);
  }
  const header: [string, string, string] = ["key", "value", "from"];
  const width = [0, 1].map((i) => Math.max(header[i]!.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((r) => `${r[0].padEnd(width[0]!)}  ${r[1].padEnd(width[1]!)}  ${r[2]}`.trimEnd()).join("\n");
}

// --- internal ---

const MASK = "********";
const MAX_VALUE = 48;

function displayValue(key: ConfigKey, value: unknown): string {
  if (SECRET_KEYS.has(key)) return MASK;
  const text = Array.isArray(value) ? (value.length ? value.join(", ") : "(none)") : String(value);
  return text.length > MAX_VALUE ? `${text.slice(0, MAX_VALUE - 1)}…` : text;
}

const ENV_NAMES = new Map(CONFIG_KEYS.map((k) => [envName(k), k] as const));

function readEnvLayer(env: Record<string, string | undefined>, cwd: string, warnings: string[]): LayerEntry[] {
  const entries: LayerEntry[] = [];
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith("FLASH_LIVE_")) continue;
    const key = ENV_NAMES.get(name);
    if (!key) {
      if (!RESERVED_ENV.has(name)) warnings.push(`Ignoring unknown environment variable ${name}.`);
      continue;
    }
    if (raw === undefined || raw.trim() === "") continue;
    let value = coerceValue(key, raw, `environment variable ${name}`);
    if (key === "plugins") value = (value as string[]).map((p) => anchorPluginPath(p, cwd));
    entries.push({ key, value, source: { layer: "env", name } });
  }
  // Environment order is arbitrary; keep the layer in key order so output is stable.
  return entries.sort((a, b) => CONFIG_KEYS.indexOf(a.key) - CONFIG_KEYS.indexOf(b.key));
}

/**
 * The flag the user typed for a key, for --explain and messages: most keys are their kebab name,
 * but `mode` comes from --ramfs/--stream and some path keys have shorter flags (commands/_shared.ts).
 */
function flagSpelling(key: ConfigKey, raw: unknown): string {
  if (key === "mode" && (raw === "ramfs" || raw === "stream")) return `--${raw}`;
  const short: Partial<Record<ConfigKey, string>> = { identityFile: "--identity", knownHostsFile: "--known-hosts", sshConfigFile: "--ssh-config" };
  return short[key] ?? `--${kebabName(key)}`;
}

function readFlagLayer(flags: Record<string, unknown>, cwd: string): LayerEntry[] {
  const byKey = new Map<ConfigKey, LayerEntry>();
  for (const [spelling, raw] of Object.entries(flags)) {
    const key = canonicalKey(spelling);
    if (!key || raw === undefined) continue;
    const name = flagSpelling(key, raw);
    if (SECRET_KEYS.has(key))
      throw new UserError(
        `${name} is not accepted on the command line: it would be visible in \`ps\` and your shell history.`,
        `Put \`${kebabName(key)}\` in the config file (see \`flash-live config init\`) or set ${envName(key)}.`,
        2,
      );
    let value = coerceValue(key, KEY_KINDS[key] === "list" && Array.isArray(raw) ? raw.flatMap((r) => String(r).split(",")) : raw, `flag ${name}`);
    if (key === "plugins") value = (value as string[]).map((p) => anchorPluginPath(p, cwd));
    byKey.set(key, { key, value, source: { layer: "flag", name } });
  }
  return [...byKey.values()];
}
