import { UserError } from "../errors.ts";
import type { FlashLiveConfig } from "./schema.ts";
import { KEY_KINDS, type ConfigKey } from "./_keys.ts";

export type ConfigLayerName = "default" | "file" | "env" | "flag";

/** Where one value came from. */
export interface ConfigSource {
  layer: ConfigLayerName;
  /** Config file (absolute path) for the file layer. */
  file?: string;
  /** 1-based line in `file`, when it could be found. */
  line?: number;
  /** Environment variable (`FLASH_LIVE_HOSTNAME`) or flag (`--hostname`) that set it. */
  name?: string;
  /** For a list extended with the `+` form: where the list it was appended to came from. */
  appendedTo?: ConfigSource;
}

export type ConfigSources = Partial<Record<ConfigKey, ConfigSource>>;

/** One value of one layer, already converted to its key's type (lists may still carry `+`). */
export interface LayerEntry {
  key: ConfigKey;
  value: unknown;
  source: ConfigSource;
  /** For lists: the line of each item, when known (the seed's repeated `ssh-key=` lines). */
  itemLines?: (number | undefined)[];
}

/** For each list key, where each item of the merged list came from. */
export type ItemSources = Partial<Record<ConfigKey, ConfigSource[]>>;

const TRUE = new Set(["1", "true", "yes", "on"]);
const FALSE = new Set(["0", "false", "no", "off"]);

/**
 * A list given as one string (environment, flag, rc file): newline-separated if it has newlines
 * (so literal `ssh-ed25519 AAAA... comment, with commas` lines survive), else comma-separated.
 */
export function splitList(text: string): string[] {
  const parts = text.includes("\n") ? text.split(/\r?\n/) : text.split(",");
  return parts.map((s) => s.trim()).filter((s) => s !== "");
}

/** Checks and converts a raw value for `key`; `where` names the origin for the error message. */
export function coerceValue(key: ConfigKey, raw: unknown, where: string): unknown {
  const kind = KEY_KINDS[key];
  const bad = (expected: string) =>
    new UserError(`${where}: \`${key}\` must be ${expected}, got ${JSON.stringify(raw)}.`, `Fix the value of \`${key}\` in ${where}.`);
  if (kind === "string") {
    if (typeof raw === "string") return raw;
    // rc files and YAML turn `hostname=1234` into a number; it is still meant as text.
    if (typeof raw === "number") return String(raw);
    throw bad("a string");
  }
  if (kind === "boolean") {
    if (typeof raw === "boolean") return raw;
    const text = String(raw).trim().toLowerCase();
    if (TRUE.has(text)) return true;
    if (FALSE.has(text)) return false;
    throw bad("true or false (also yes/no, 1/0, on/off)");
  }
  if (kind === "list") {
    const items = typeof raw === "string" ? splitList(raw) : Array.isArray(raw) ? raw : undefined;
    if (!items || items.some((i) => typeof i !== "string" && typeof i !== "number")) throw bad("a list of strings");
    return items.map((i) => String(i).trim()).filter((i) => i !== "");
  }
  const choices = kind as readonly string[];
  if (typeof raw === "string" && choices.includes(raw)) return raw;
  throw bad(`one of ${choices.join(", ")}`);
}

/**
 * The list rule (README "Config layers"): a list in a higher layer REPLACES the list below it,
 * unless every item starts with `+`, in which case the items (without `+`) are appended to it,
 * skipping ones already there. Mixing both forms in one list is refused: it has no clear meaning.
 */
export function isAppendList(key: ConfigKey, items: string[], where: string): boolean {
  const plus = items.filter((i) => i.startsWith("+")).length;
  if (plus === 0 || items.length === 0) return false;
  if (plus === items.length) return true;
  throw new UserError(
    `${where}: \`${key}\` mixes appended (+item) and plain items: ${JSON.stringify(items)}.`,
    "Write all items with a leading + to add them to the list from lower layers, or none to replace it.",
  );
}

export function describeSource(s: ConfigSource): string {
  const own =
    s.layer === "file" ? `${s.file ?? "config file"}${s.line ? `:${s.line}` : ""}` : s.name ? `${s.layer} ${s.name}` : s.layer;
  return s.appendedTo ? `${own} (+ ${describeSource(s.appendedTo)})` : own;
}

/** Merges layers in order (lowest first): scalars override, lists follow `isAppendList`. */
export function mergeLayers(layers: LayerEntry[][]): { config: FlashLiveConfig; sources: ConfigSources; itemSources: ItemSources } {
  const config: Record<string, unknown> = {};
  const sources: ConfigSources = {};
  const itemSources: ItemSources = {};
  for (const layer of layers) {
    for (const { key, value, source, itemLines } of layer) {
      if (value === undefined) continue;
      if (KEY_KINDS[key] === "list") {
        const items = value as string[];
        const itemSource = (i: number): ConfigSource => (itemLines?.[i] ? { ...source, line: itemLines[i] } : source);
        if (isAppendList(key, items, describeSource(source))) {
          const merged = [...((config[key] as string[] | undefined) ?? [])];
          const from = [...(itemSources[key] ?? [])];
          items.forEach((raw, i) => {
            const item = raw.slice(1).trim();
            if (item === "" || merged.includes(item)) return;
            merged.push(item);
            from.push(itemSource(i));
          });
          config[key] = merged;
          itemSources[key] = from;
          sources[key] = sources[key] ? { ...source, appendedTo: sources[key] } : source;
          continue;
        }
        config[key] = [...items];
        itemSources[key] = items.map((_, i) => itemSource(i));
      } else {
        config[key] = value;
      }
      sources[key] = source;
    }
  }
  return { config: config as FlashLiveConfig, sources, itemSources };
}
