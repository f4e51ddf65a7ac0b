import { homedir } from "node:os";
import type { FlashLiveConfig } from "../config/schema.ts";
import { hostKeysFromFiles } from "../customize/host-keys.ts";
import { describeCustomization, prepareBootEdit } from "../customize/image-file.ts";
import { refuseNoBootPartition } from "../customize/inspect.ts";
import type { ConfOrigins } from "../config/seed-conf.ts";
import { resolveCustomization, type ResolvedCustomization } from "../customize/resolve.ts";
import type { Extent } from "../image/scan.ts";
import { type ImageInfo, rawChunks } from "../image/source.ts";
import type { FlashContext } from "./context.ts";
import type { PartitionProbe } from "./hooks.ts";
import { locateRecord, RECORD_FILE, recordPlaceholder } from "./record.ts";

/** The edit of the new image's boot partition, computed on the sending side before anything on the board changes. */
export interface PreparedBoot {
  /** Sectors written over the image right after it (absolute disk offsets). */
  extents: Extent[];
  /** The customization (--config), when there is one. */
  customization?: {
    mechanism: "cloud-init" | "firstrun";
    /** One line for the confirmation summary (no secrets). */
    summary: string;
  };
  /** Where the flash record's sector is (its placeholder is among the extents). */
  record?: { offset: number; flashId: string };
  /** Why there is no record although one was asked for. */
  noRecord?: string;
}

/** Validate the customization keys; runs before any connection so config errors come first. */
export function resolveCustomizationFor(config: FlashLiveConfig, origin?: ConfOrigins, cwd?: string): ResolvedCustomization | undefined {
  return resolveCustomization(config, { home: homedir(), origin, cwd });
}

/**
 * Read the image's head up to the end of its boot partition, build the payloads (plugins may change
 * them in customize:payloads) and the flash record's placeholder, edit the FAT copy in memory and
 * keep only the changed sectors. Undefined when there is nothing to write besides the image.
 */
export async function prepareBootFor(
  ctx: FlashContext,
  image: ImageInfo,
  config: FlashLiveConfig,
  resolved: ResolvedCustomization | undefined,
  record: { flashId: string } | undefined,
): Promise<PreparedBoot | undefined> {
  if (!resolved && !record) return undefined;
  const probes: PartitionProbe[] = [];
  await ctx.hooks.callHook("partitions:probe", ctx, probes);
  let hostKeys;
  if (resolved && config.keepHostKeys) hostKeys = await readHostKeys(ctx);
  const placeholder = record ? recordPlaceholder(record.flashId) : undefined;
  const chunks = rawChunks(image);
  try {
    const edit = await prepareBootEdit(chunks, resolved, {
      customizeWith: config.customizeWith,
      probes,
      hostKeys,
      onPayloads: (files) => ctx.hooks.callHook("customize:payloads", ctx, files),
      extraFiles: placeholder ? [{ path: RECORD_FILE, data: placeholder }] : [],
    }).catch((e) => {
      // The record alone must never stop a flash (a full FAT, say): the image is still written.
      if (resolved || !record) throw e;
      return { noRecord: e instanceof Error ? e.message : String(e) } as const;
    });
    if (!edit) {
      if (resolved) refuseNoBootPartition();
      return { extents: [], noRecord: "the image has no FAT boot partition to hold it" };
    }
    if ("noRecord" in edit) return { extents: [], noRecord: edit.noRecord };
    const offset = placeholder ? locateRecord(edit.patch.extents, placeholder) : undefined;
    return {
      extents: edit.patch.extents,
      customization: resolved && edit.choice ? { mechanism: edit.choice.mechanism, summary: describeCustomization(resolved, { ...edit, choice: edit.choice }) } : undefined,
      record: record && offset !== undefined ? { offset, flashId: record.flashId } : undefined,
      noRecord: record && offset === undefined ? "its sector was not found in the boot partition edit" : undefined,
    };
  } finally {
    await chunks.return(undefined);
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
