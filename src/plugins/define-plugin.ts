import type { FlashHookable, FlashHooks } from "../core/hooks.ts";
import type { FlashLiveConfig } from "../config/schema.ts";

export type { BootFile, FlashHooks, PartitionProbe } from "../core/hooks.ts";
export type { FlashContext } from "../core/context.ts";

/** What `setup` gets: the hook registry (for hooks added conditionally) and the loaded config. */
export interface FlashPluginSetup {
  hooks: FlashHookable;
  config: FlashLiveConfig;
}

export interface FlashPlugin {
  /** Shown in logs and errors; unique among the loaded plugins. */
  name: string;
  /** Hook handlers by hook name (see FlashHooks in src/core/hooks.ts). */
  hooks?: { [K in keyof FlashHooks]?: FlashHooks[K] };
  /** Runs once when the plugin is registered, before any hook is called. */
  setup?: (api: FlashPluginSetup) => void | Promise<void>;
}

/**
 * Identity helper that gives a plugin its types. From a plugin file anywhere on disk (also with
 * the compiled binary): `import { definePlugin } from "flash-live/plugin"`.
 */
export function definePlugin(plugin: FlashPlugin): FlashPlugin {
  return plugin;
}
