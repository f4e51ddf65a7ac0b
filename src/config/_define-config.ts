import type { FlashLiveConfig } from "./schema.ts";

/**
 * Identity helper for `flash-live.config.ts`, for types only:
 *
 *   import { defineFlashLiveConfig } from "flash-live/config";
 *   export default defineFlashLiveConfig({ hostname: "myboat", services: ["+myapp-*"] });
 *
 * Lists (`sshKeys`, `services`, `plugins`) replace the ones from lower layers unless every item
 * starts with `+` (append); see README "Config layers".
 */
export function defineFlashLiveConfig(config: FlashLiveConfig): FlashLiveConfig {
  return config;
}
