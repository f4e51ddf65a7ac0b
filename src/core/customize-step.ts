import { homedir } from "node:os";
import type { FlashLiveConfig } from "../config/schema.ts";
import { hostKeysFromFiles } from "../customize/host-keys.ts";
import { describeCustomization, prepareFromImageStream } from "../customize/image-file.ts";
import type { ConfOrigins } from "../config/seed-conf.ts";
import { resolveCustomization, type ResolvedCustomization } from "../customize/resolve.ts";
import type { Extent } from "../image/scan.ts";
import { type ImageInfo, rawStream } from "../image/source.ts";
import type { FlashContext } from "./context.ts";
import type { PartitionProbe } from "./hooks.ts";

/** The customization, computed on the sending side before anything on the board changes. */
export interface PreparedCustomization {
  mechanism: "cloud-init" | "firstrun";
  /** Sectors written over the image right after it (absolute disk offsets). */
  extents: Extent[];
  /** One line for the confirmation summary (no secrets). */
  summary: string;
}

/** Validate the customization keys; runs before any connection so config errors come first. */
export function resolveCustomizationFor(config: FlashLiveConfig, origin?: ConfOrigins, cwd?: string): ResolvedCustomization | undefined {
  return resolveCustomization(config, { home: homedir(), origin, cwd });
}

/**
 * Read the image's head up to the end of its boot partition, build the payloads (plugins may change
 * them in customize:payloads), edit the FAT copy in memory and keep only the changed sectors.
 */
export async function prepareCustomizationFor(
  ctx: FlashContext,
  image: ImageInfo,
  config: FlashLiveConfig,
  resolved: ResolvedCustomization | undefined,
): Promise<PreparedCustomization | undefined> {
  if (!resolved) return undefined;
  const probes: PartitionProbe[] = [];
  await ctx.hooks.callHook("partitions:probe", ctx, probes);
  let hostKeys;
  if (config.keepHostKeys) hostKeys = await readHostKeys(ctx);
  const stream = rawStream(image);
  try {
    const prepared = await prepareFromImageStream(stream, resolved, {
      customizeWith: config.customizeWith,
      probes,
      hostKeys,
      onPayloads: (files) => ctx.hooks.callHook("customize:payloads", ctx, files),
    });
    return {
      mechanism: prepared.choice.mechanism,
      extents: prepared.patch.extents,
      summary: describeCustomization(resolved, prepared),
    };
  } finally {
    stream.destroy();
  }
}

/** keep-host-keys: the board's current host keys, read as root (they never touch the local disk). */
async function readHostKeys(ctx: FlashContext) {
  const r = await ctx.target.exec(["sh", "-c", 'for f in /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub; do [ -r "$f" ] && printf "%s\\n" "$f" && base64 -w0 "$f" 2>/dev/null && echo; done'], { root: true });
  const lines = r.stdout.split("\n");
  const files: Record<string, string> = {};
  for (let i = 0; i + 1 < lines.length; i += 2) {
    if (lines[i]) files[lines[i]!] = Buffer.from(lines[i + 1]!, "base64").toString("utf8");
  }
  return hostKeysFromFiles(files);
}
