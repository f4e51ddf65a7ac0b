import { UserError } from "../errors.ts";
import { CONF_KEYS, type CustomizationConfig } from "./schema.ts";

/** Where a value came from: a file and line, or another layer (`line` absent, e.g. "environment"). */
export interface ConfOrigin {
  file: string;
  line?: number;
}

/**
 * Origins by config key. Scalar keys use their camelCase name (`hostname`, `wifiSsid`); each
 * `ssh-key` line is recorded as `sshKeys.0`, `sshKeys.1`, ... in file order.
 */
export type ConfOrigins = Record<string, ConfOrigin>;

export interface ParsedSeedConf {
  config: CustomizationConfig;
  origin: ConfOrigins;
}

export type ConfKey = keyof typeof CONF_KEYS;

const BOOLEAN_KEYS = new Set<ConfKey>(["ssh-password-auth", "keep-host-keys"]);
const TRUE_WORDS = new Set(["true", "yes", "on", "1"]);
const FALSE_WORDS = new Set(["false", "no", "off", "0"]);

/**
 * Parse the seed's key=value customization file (flash-live-remote's `--config`), unchanged:
 * `#` starts a comment line, blank lines are skipped, the value is everything after the first `=`
 * with no quoting and its spaces kept, `ssh-key` may repeat. A trailing CR (a file saved on
 * Windows) is dropped because no value can meaningfully end in one.
 */
export function parseSeedConf(text: string, file: string): ParsedSeedConf {
  const config: CustomizationConfig = {};
  const origin: ConfOrigins = {};
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const where = `${file}:${lineNo}`;
    let line = lines[i];
    if (line.endsWith("\r")) line = line.slice(0, -1);
    if (i === 0 && line.startsWith("\uFEFF")) line = line.slice(1);
    const trimmed = line.trim();
    if (trimmed === "" || trimmed.startsWith("#")) continue;
    const eq = line.indexOf("=");
    if (eq < 0) {
      throw new UserError(
        `${where}: expected key=value, found ${JSON.stringify(truncate(trimmed))}`,
        `Write one setting per line as key=value (e.g. hostname=myboat), or start the line with # to make it a comment.`,
      );
    }
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1);
    if (!(key in CONF_KEYS)) {
      const near = closestKey(key);
      throw new UserError(
        `${where}: unknown key ${JSON.stringify(key)}`,
        (near ? `Did you mean "${near}"? ` : "") + `Known keys: ${Object.keys(CONF_KEYS).join(", ")} (see example.conf).`,
      );
    }
    const confKey = key as ConfKey;
    const field = CONF_KEYS[confKey];
    // An empty value means "not set", as in the seed (its shell tested each value with -n).
    if (value === "") continue;

    if (field === "sshKeys") {
      const list = (config.sshKeys ??= []);
      origin[`sshKeys.${list.length}`] = { file, line: lineNo };
      list.push(value);
      continue;
    }
    const previous = origin[field];
    if (previous) {
      throw new UserError(
        `${where}: ${key} is set twice (also at line ${previous.line})`,
        `Keep one ${key}= line; only ssh-key may repeat.`,
      );
    }
    origin[field] = { file, line: lineNo };
    if (BOOLEAN_KEYS.has(confKey)) {
      const word = value.trim().toLowerCase();
      if (TRUE_WORDS.has(word)) (config as Record<string, unknown>)[field] = true;
      else if (FALSE_WORDS.has(word)) (config as Record<string, unknown>)[field] = false;
      else {
        throw new UserError(
          `${where}: ${key} must be true or false, found ${JSON.stringify(truncate(value))}`,
          `Write ${key}=true or ${key}=false (yes/no and on/off work too).`,
        );
      }
      continue;
    }
    (config as Record<string, unknown>)[field] = value;
  }
  return { config, origin };
}

/** The kebab-case key of a config field, as written in a .conf file. */
export function confKeyOf(field: keyof CustomizationConfig): ConfKey {
  for (const [k, f] of Object.entries(CONF_KEYS)) if (f === field) return k as ConfKey;
  throw new Error(`no conf key for ${field}`);
}

/** "file:line: " (or "file: ") for messages, "" when the origin is unknown. */
export function formatOrigin(o: ConfOrigin | undefined): string {
  if (!o) return "";
  return o.line ? `${o.file}:${o.line}: ` : `${o.file}: `;
}

// --- internal ---

function truncate(s: string, n = 60): string {
  return s.length > n ? `${s.slice(0, n)}...` : s;
}

function closestKey(key: string): string | undefined {
  const k = key.toLowerCase().replaceAll("_", "-");
  let best: string | undefined;
  let bestDist = Infinity;
  for (const candidate of Object.keys(CONF_KEYS)) {
    const d = candidate === k ? 0 : levenshtein(k, candidate);
    if (d < bestDist) {
      best = candidate;
      bestDist = d;
    }
  }
  // A suggestion far from what was typed is noise.
  return best !== undefined && bestDist <= Math.max(2, Math.floor(best.length / 3)) ? best : undefined;
}

function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}
