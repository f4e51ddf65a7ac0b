/**
 * An example flash-live plugin. Use it with
 *
 *   flash-live.config.ts:   export default { plugins: ["./examples/plugins/example.ts"] }
 *   or a .conf/--config run: FLASH_LIVE_PLUGINS=+./examples/plugins/example.ts flash-live flash ...
 *
 * A plugin is a local .ts or .js file whose default export is `definePlugin({ name, hooks, setup })`.
 * It runs inside flash-live (also the compiled binary), so it may import only "flash-live/plugin"
 * and Node/Bun built-ins (node:fs, node:path, ...), not packages from npm.
 *
 * Every hook gets the run's context first (`ctx.facts`: what was found on the board, `ctx.plan`:
 * what will be done, `ctx.warnings`: push a string to have it shown at the end), then the thing it
 * may change. Hooks run in plugin order: built-ins (halos) first, then plugins as listed.
 */
import { definePlugin } from "flash-live/plugin";

/** The file this plugin adds to the new image's FAT boot partition (a plain ASCII name is safest). */
export const EXAMPLE_BOOT_FILE = "flash-live-example.txt";
export const EXAMPLE_BOOT_TEXT = "This boot partition was customized by the flash-live example plugin.\n";
/** A unit pattern this plugin adds to the services stopped before the write. */
export const EXAMPLE_SERVICE = "example-app-*";

export default definePlugin({
  name: "example",

  hooks: {
    // Services are systemd unit name patterns, stopped before the image is written, so nothing
    // writes to the old root while it is overwritten. Add, remove or reorder in place.
    "services:resolve"(_ctx, services) {
      if (!services.includes(EXAMPLE_SERVICE)) services.push(EXAMPLE_SERVICE);
    },

    // Files about to be written to the new image's boot partition (cloud-init seed files or
    // firstrun.sh are already in the list). Add your own, or edit theirs.
    "customize:payloads"(_ctx, files) {
      files.push({ path: EXAMPLE_BOOT_FILE, data: EXAMPLE_BOOT_TEXT });
    },

    // Around every phase (facts, plan, confirm, stage, quiesce, handoff, wait): here just logged to
    // stderr; a plugin could also time phases, notify someone, or refuse to continue by throwing.
    "phase:before"(_ctx, phase) {
      console.error(`[example] ${phase}: starting`);
    },
    "phase:after"(_ctx, phase, ms) {
      console.error(`[example] ${phase}: done in ${(ms / 1000).toFixed(1)} s`);
    },
  },

  // Optional: runs once when the plugin is registered, with the hook registry and the loaded config.
  setup({ config }) {
    if (config.hostname) console.error(`[example] loaded for ${config.hostname}`);
  },
});
