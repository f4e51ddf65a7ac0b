import { definePlugin } from "./define-plugin.ts";
import { defineFlashLiveConfig } from "../config/_define-config.ts";

let registered = false;

/**
 * Plugins and `flash-live.config.ts` files live anywhere on the user's disk, with no node_modules
 * next to them, and inside the compiled binary there is no package on disk to import at all. So
 * the two helpers they import are served as virtual modules of this process:
 *
 *   import { definePlugin } from "flash-live/plugin";
 *   import { defineFlashLiveConfig } from "flash-live/config";
 *
 * (Checked: works for Bun's own import() and for c12/jiti, in `bun` and in a `--compile` binary.)
 * In this repository tsconfig.json maps the same names to the source files for type checking.
 */
export function registerVirtualModules(): void {
  if (registered) return;
  registered = true;
  Bun.plugin({
    name: "flash-live-virtual-modules",
    setup(build) {
      build.module("flash-live/plugin", () => ({ loader: "object", exports: { definePlugin } }));
      build.module("flash-live/config", () => ({ loader: "object", exports: { defineFlashLiveConfig } }));
    },
  });
}
