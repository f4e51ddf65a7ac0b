import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, extname, isAbsolute, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { loadConfig, SUPPORTED_EXTENSIONS, type LoadConfigOptions } from "c12";
import { UserError } from "../errors.ts";
import { registerVirtualModules } from "../plugins/_virtual-modules.ts";
import { parseSeedConf } from "./seed-conf.ts";
import { canonicalKey, CONFIG_KEYS, kebabName, spellingsOf, type ConfigKey } from "./_keys.ts";
import { coerceValue, type LayerEntry } from "./_merge.ts";

/** Name c12 searches for: flash-live.config.{ts,js,mjs,json,yaml,...} and .config/flash-live.*. */
export const CONFIG_NAME = "flash-live";
export const RC_FILE = ".flashliverc";

/** One config file's values. Several files form the file layer (`.flashliverc` below `flash-live.config.*`). */
export interface FileLayer {
  file: string;
  entries: LayerEntry[];
}

/**
 * The file layer: either the file given with `--config` (seed key=value `.conf`, or any format c12
 * reads, by extension), or what c12 finds in `cwd` (flash-live.config.* over .flashliverc).
 * Returned lowest first.
 */
export async function loadFileLayers(cwd: string, configFile?: string): Promise<FileLayer[]> {
  registerVirtualModules();
  if (configFile) return [await loadExplicitFile(resolve(cwd, configFile))];

  const r = await c12Load({ name: CONFIG_NAME, cwd, rcFile: false }, `the config file in ${cwd}`);
  const layers: FileLayer[] = [];
  const rcPath = join(cwd, RC_FILE);
  if (existsSync(rcPath)) {
    const text = readText(rcPath);
    const { values, lines } = parseRcFile(text, rcPath);
    layers.push(toFileLayer(values, rcPath, text, lines));
  }
  if (r._configFile && r.config) layers.push(toFileLayer(r.config, r._configFile, readText(r._configFile)));
  return layers;
}

/**
 * `.flashliverc` in c12's rc format (`key=value`, `key[]=value` for list items, `#` comments),
 * parsed here rather than by rc9, which guesses types from the text: `wifiPassword=00123456`
 * became the number 123456 and `wifiPassword=true` a boolean. Here a value is text (a JSON-quoted
 * "..." is unquoted) and the key's own type decides. A plain key given twice is refused, since
 * rc9 would silently keep only the last (easy to do with seed-style repeated ssh-key lines).
 */
export function parseRcFile(text: string, file: string): { values: Record<string, unknown>; lines: Record<string, number> } {
  const values: Record<string, unknown> = {};
  const lines: Record<string, number> = {};
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === "" || line.trimStart().startsWith("#")) return;
    const m = /^\s*([^\s=]+?)(\[\])?\s*=(.*)$/.exec(line);
    if (!m) throw new UserError(`${file}:${i + 1}: expected key=value.`, "Write key=value, or key[]=value for each item of a list.");
    const [, key, list, rawValue] = m as unknown as [string, string, string | undefined, string];
    let value = rawValue.trim();
    if (/^".*"$/.test(value)) {
      try {
        value = JSON.parse(value);
      } catch {}
    }
    if (list) {
      values[key] = [...((values[key] as string[] | undefined) ?? []), value];
    } else {
      if (key in values)
        throw new UserError(`${file}:${i + 1}: \`${key}\` is given twice.`, `For a list write one \`${key}[]=...\` line per item.`);
      values[key] = value;
    }
    const canonical = canonicalKey(key) ?? key;
    lines[canonical] ??= i + 1;
  });
  return { values, lines };
}

/**
 * c12 imports JS/TS configs through jiti, which under Bun tries Bun's own import first but on ANY
 * error retries with a Babel transform that a compiled binary does not contain, so a typo in the
 * user's config surfaced as "Cannot find module '../dist/babel.cjs'" (seen in a --compile build);
 * jiti also creates a cache directory. Bun imports .ts/.mjs/.cjs itself, in the binary too.
 */
const bunImporter = {
  async import(id: string, opts?: { default?: boolean }) {
    const mod = await import(pathToFileURL(id).href);
    return opts?.default ? (mod.default ?? mod) : mod;
  },
} as unknown as NonNullable<LoadConfigOptions["jiti"]>;

// No dotenv (the environment layer is explicit), no package.json key, no `extends` (remote configs
// are downloaded by giget: nothing is fetched while preparing to overwrite a disk), no $env keys.
const C12_OPTIONS = { dotenv: false, packageJson: false, globalRc: false, envName: false, giget: false, extend: false, jiti: bunImporter } as const;

async function c12Load(options: LoadConfigOptions<Record<string, unknown>>, what: string) {
  try {
    return await loadConfig<Record<string, unknown>>({ ...C12_OPTIONS, ...options });
  } catch (e) {
    throw new UserError(`Cannot load ${what}: ${(e as Error).message}`, "Fix the config file; a .ts/.js config may import only `flash-live/config` and Node/Bun built-ins.");
  }
}

/** `--config FILE`: the seed's key=value format by `.conf` extension or by content, else c12 by extension. */
async function loadExplicitFile(file: string): Promise<FileLayer> {
  if (!existsSync(file) || !statSync(file).isFile())
    throw new UserError(`Config file not found: ${file}`, "Check the path given with --config, or create one with `flash-live config init`.");
  const ext = extname(file);
  const text = readText(file);
  if (ext === ".conf" || (!SUPPORTED_EXTENSIONS.includes(ext) && looksLikeKeyValue(text))) {
    const { config, origin } = parseSeedConf(text, file);
    return toFileLayer(config as Record<string, unknown>, file, text, originLines(origin), originItemLines(origin));
  }
  if (!SUPPORTED_EXTENSIONS.includes(ext))
    throw new UserError(
      `Cannot tell the format of config file ${file}.`,
      `Use the key=value format (like example.conf) or one of ${SUPPORTED_EXTENSIONS.join(" ")}.`,
    );
  const r = await c12Load({ cwd: dirname(file), configFile: basename(file), rcFile: false }, file);
  if (!r.config || typeof r.config !== "object" || Array.isArray(r.config))
    throw new UserError(`Config file ${file} does not export an object.`, "Export the settings as `export default { ... }` (or a JSON/YAML object).");
  return toFileLayer(r.config, file, text);
}

/** The seed format: every line blank, a `#` comment, or `key=value`. */
function looksLikeKeyValue(text: string): boolean {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== "" && !l.trimStart().startsWith("#"));
  return lines.length > 0 && lines.every((l) => /^\s*[A-Za-z][\w-]*\s*=/.test(l));
}

function toFileLayer(
  raw: Record<string, unknown>,
  file: string,
  text: string,
  lines?: Partial<Record<string, number>>,
  itemLines?: Partial<Record<string, number[]>>,
): FileLayer {
  const entries: LayerEntry[] = [];
  const seen = new Map<ConfigKey, string>();
  for (const [spelling, value] of Object.entries(raw)) {
    if (spelling.startsWith("$") || value === undefined) continue;
    const key = canonicalKey(spelling);
    if (!key)
      throw new UserError(
        `${file}: unknown config key \`${spelling}\`.`,
        `Known keys: ${CONFIG_KEYS.join(", ")} (kebab-case spellings like ${kebabName("wifiSsid")} work too).`,
      );
    if (seen.has(key)) throw new UserError(`${file}: \`${key}\` is given twice (as \`${seen.get(key)}\` and \`${spelling}\`).`, "Keep one of them.");
    seen.set(key, spelling);
    let v = coerceValue(key, value, file);
    if (key === "plugins") v = (v as string[]).map((p) => anchorPluginPath(p, dirname(file)));
    entries.push({ key, value: v, source: { layer: "file", file, line: lines?.[key] ?? findKeyLine(text, key) }, itemLines: itemLines?.[key] });
  }
  return { file, entries };
}

/**
 * Plugin paths are relative to the file that names them; anchor them now, because later layers and
 * the plugin loader no longer know which file that was. Built-in names (`halos`, `!halos`) and the
 * `+` append marker are kept.
 */
export function anchorPluginPath(entry: string, baseDir: string): string {
  const plus = entry.startsWith("+") ? "+" : "";
  const p = entry.slice(plus.length).trim();
  if (!isPluginPath(p) || isAbsolute(p) || p.startsWith("~")) return entry;
  return plus + resolve(baseDir, p);
}

/** A plugin list entry is a path (vs a built-in name) if it looks like one. */
export function isPluginPath(entry: string): boolean {
  return /[/\\]/.test(entry) || entry.startsWith(".") || entry.startsWith("~") || /\.[cm]?[jt]s$/.test(entry);
}

/** parseSeedConf's origin (key -> { file, line }; repeated keys as `sshKeys.0`, `sshKeys.1`, ...) -> first line per key. */
function originLines(origin: unknown): Partial<Record<string, number>> {
  const out: Partial<Record<string, number>> = {};
  if (!origin || typeof origin !== "object") return out;
  for (const [k, v] of Object.entries(origin as Record<string, unknown>)) {
    const base = k.replace(/\.\d+$/, "");
    const key = canonicalKey(base) ?? base;
    const line = lineOf(v);
    if (line && (out[key] === undefined || line < out[key]!)) out[key] = line;
  }
  return out;
}

/** parseSeedConf's `sshKeys.0`, `sshKeys.1`, ... -> the line of each item. */
function originItemLines(origin: unknown): Partial<Record<string, number[]>> {
  const out: Partial<Record<string, number[]>> = {};
  if (!origin || typeof origin !== "object") return out;
  for (const [k, v] of Object.entries(origin as Record<string, unknown>)) {
    const m = /^(.+)\.(\d+)$/.exec(k);
    const key = m && canonicalKey(m[1]!);
    const line = lineOf(v);
    if (key && line) (out[key] ??= [])[Number(m[2])] = line;
  }
  return out;
}

function lineOf(v: unknown): number | undefined {
  if (typeof v === "number") return v;
  if (v && typeof v === "object" && typeof (v as { line?: unknown }).line === "number") return (v as { line: number }).line;
  return undefined;
}

/**
 * Best-effort line of a top-level key in a config file of any format (`key:`, `"key":`, `key=`,
 * `key[]=`), for `check --explain`. Comment lines are skipped. Good enough for flat configs; a TS
 * config that computes its keys gets no line, just the file.
 */
export function findKeyLine(text: string, key: ConfigKey): number | undefined {
  const names = spellingsOf(key).map((s) => s.replace(/[.*+?^${}()|[\]\\-]/g, "\\$&"));
  const re = new RegExp(`^\\s*(?:export\\s+)?["']?(?:${names.join("|")})["']?\\s*(?:\\[\\])?\\s*[:=]`);
  const lines = text.split(/\r?\n/);
  // Also match keys after `{` or `,` on a line (`export default { hostname: "x" }`).
  const inline = new RegExp(`[{,]\\s*["']?(?:${names.join("|")})["']?\\s*:`);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (/^\s*(#|\/\/|\*|\/\*)/.test(line)) continue;
    if (re.test(line) || inline.test(line)) return i + 1;
  }
  return undefined;
}

function readText(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (e) {
    throw new UserError(`Cannot read config file ${file}: ${(e as Error).message}`, "Check its permissions.");
  }
}
