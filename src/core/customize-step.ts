import type { Extent } from "../image/scan.ts";

/** The customization, computed on the sending side before anything on the board changes. */
export interface PreparedCustomization {
  mechanism: "cloud-init" | "firstrun";
  /** Sectors written over the image right after it (absolute disk offsets). */
  extents: Extent[];
  /** One line for the confirmation summary. */
  summary: string;
}

import type { FlashLiveConfig } from "../config/schema.ts";
import type { ImageInfo } from "../image/source.ts";
import type { FlashContext } from "./context.ts";

const CUSTOM_KEYS = ["hostname", "user", "password", "passwordHash", "sshKeys", "wifiSsid", "wifiPassword", "timezone", "keyboardLayout", "locale", "sshPasswordAuth", "keepHostKeys"] as const;

export async function prepareCustomizationFor(ctx: FlashContext, image: ImageInfo, config: FlashLiveConfig): Promise<PreparedCustomization | undefined> {
  const wanted = CUSTOM_KEYS.some((k) => {
    const v = config[k];
    return Array.isArray(v) ? v.length > 0 : v !== undefined && v !== false;
  });
  if (!wanted) return undefined;
  throw new Error("customization is being wired in");
}
