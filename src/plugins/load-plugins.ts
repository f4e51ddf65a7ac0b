import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { UserError } from "../errors.ts";
import type { FlashHookable, FlashHooks } from "../core/hooks.ts";
import type { FlashLiveConfig } from "../config/schema.ts";
import type { FlashPlugin } from "./define-plugin.ts";
import { registerVirtualModules } from "./_virtual-modules.ts";
import { isPluginPath } from "../config/_file-layer.ts";
import halos from "./halos.ts";

/** Plugins shipped in the binary, by name. Those in DEFAULT_BUILTINS are on unless `!name` is listed. */
export const BUILTIN_PLUGINS: Readonly<Record<string, FlashPlugin>> = { halos };
export const DEFAULT_BUILTINS: readonly string[] = ["halos"];

// Checked against FlashHooks at compile time, so a plugin that misspells a hook name
// ("service:resolve") is refused instead of being silently never called.
const HOOK_NAMES = {
  "facts:gathered": true,
  "services:resolve": true,
  "partitions:probe": true,
  "customize:payloads": true,
  "phase:before": true,
  "phase:after": true,
} as const satisfies Record<keyof FlashHooks, true>;

export interface LoadPluginsOptions {
  /** Relative plugin paths are resolved from here (the config loader already anchors paths from files). */
  baseDir: string;
  /** For `~/` in paths; default: the user's home directory. */
  home?: string;
}

/**
 * Turns the config's `plugins` list into plugins, in order: the enabled built-ins first, then
 * the files as listed. Entries:
 *   - `./x.ts`, `/abs/x.js`, `~/x.ts`, `x.mjs`: a local module whose default export is a plugin;
 *   - `!halos`: turn a built-in off;  `halos`: turn it (back) on.
 */
export async function loadPlugins(entries: readonly string[] = [], options: LoadPluginsOptions): Promise<FlashPlugin[]> {
  const builtins = new Set(DEFAULT_BUILTINS);
  const files: string[] = [];
  for (const raw of entries) {
    const entry = raw.trim();
    if (entry.startsWith("!")) builtins.delete(builtinName(entry.slice(1)));
    else if (isPluginPath(entry)) files.push(resolve(options.baseDir, expandHome(entry, options.home ?? homedir())));
    else builtins.add(builtinName(entry));
  }

  const plugins = Object.keys(BUILTIN_PLUGINS)
    .filter((n) => builtins.has(n))
    .map((n) => BUILTIN_PLUGINS[n]!);
  for (const file of files) plugins.push(await importPlugin(file));

  const names = new Set<string>();
  for (const p of plugins) {
    if (names.has(p.name)) throw new UserError(`Two plugins are named "${p.name}".`, "Give each plugin a unique name, or list it only once.");
    names.add(p.name);
  }
  return plugins;
}

/**
 * Registers each plugin's hooks and runs its `setup`, in order (built-ins first, as loadPlugins
 * returns them), so for a mutable argument the later plugin sees what the earlier ones did.
 */
export async function registerPlugins(
  hooks: FlashHookable,
  plugins: readonly FlashPlugin[],
  options: { config?: FlashLiveConfig } = {},
): Promise<void> {
  for (const plugin of plugins) {
    if (plugin.hooks) hooks.addHooks(plugin.hooks as Partial<FlashHooks>);
    try {
      await plugin.setup?.({ hooks, config: options.config ?? {} });
    } catch (e) {
      throw new Error(`plugin "${plugin.name}" failed in setup: ${(e as Error).message}`, { cause: e });
    }
  }
}

// --- internal ---

function builtinName(name: string): string {
  if (name in BUILTIN_PLUGINS) return name;
  throw new UserError(
    `Unknown built-in plugin "${name}".`,
    `Built-in plugins: ${Object.keys(BUILTIN_PLUGINS).join(", ")}. A plugin file needs a path (./${name}.ts).`,
  );
}

function expandHome(p: string, home: string): string {
  return p === "~" ? home : p.startsWith("~/") ? join(home, p.slice(2)) : p;
}

async function importPlugin(file: string): Promise<FlashPlugin> {
  if (!existsSync(file)) throw new UserError(`Plugin not found: ${file}`, "Check the path in `plugins` (relative paths are relative to the config file).");
  registerVirtualModules();
  let mod: { default?: unknown };
  try {
    mod = await import(pathToFileURL(file).href);
  } catch (e) {
    throw new UserError(`Cannot load plugin ${file}: ${(e as Error).message}`, "Fix the plugin file; it may import only `flash-live/plugin` and Node/Bun built-ins.");
  }
  const plugin = mod.default as FlashPlugin | undefined;
  const hint = 'Export it as `export default definePlugin({ name: "...", hooks: { ... } })`.';
  if (!plugin || typeof plugin !== "object" || typeof plugin.name !== "string" || plugin.name === "")
    throw new UserError(`Plugin ${file} has no default export with a name.`, hint);
  if (plugin.hooks !== undefined) {
    if (typeof plugin.hooks !== "object" || plugin.hooks === null) throw new UserError(`Plugin ${file}: \`hooks\` must be an object.`, hint);
    for (const [name, fn] of Object.entries(plugin.hooks)) {
      if (!(name in HOOK_NAMES))
        throw new UserError(`Plugin ${file} hooks unknown hook "${name}".`, `Known hooks: ${Object.keys(HOOK_NAMES).join(", ")}.`);
      if (typeof fn !== "function") throw new UserError(`Plugin ${file}: hook "${name}" is not a function.`, hint);
    }
  }
  if (plugin.setup !== undefined && typeof plugin.setup !== "function") throw new UserError(`Plugin ${file}: \`setup\` is not a function.`, hint);
  return plugin;
}
