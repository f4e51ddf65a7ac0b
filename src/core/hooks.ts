import { createHooks, type Hookable } from "hookable";
import type { FlashContext } from "./context.ts";

/** One file that the customization writes on the new image's boot partition. */
export interface BootFile {
  /** Path inside the FAT boot partition, e.g. "user-data" or "firstrun.sh". */
  path: string;
  data: Uint8Array | string;
}

/** A way of finding the boot partition in the new image (see src/customize). */
export interface PartitionProbe {
  name: string;
  /** Index (1-based) of the partition that is the FAT boot partition, or undefined to let the next probe decide. */
  pick(partitions: readonly { index: number; type: string; start: number; size: number; fat: boolean; label?: string }[]): number | undefined;
}

/**
 * Every point a plugin may hook. Names are `<area>:<event>`. A hook gets the shared context and,
 * where it may change something, that thing as a mutable argument.
 */
export interface FlashHooks {
  /** Facts about the target are known (read-only for plugins). */
  "facts:gathered": (ctx: FlashContext) => void | Promise<void>;
  /** Services to stop before the write: glob patterns of systemd units. Mutate the array. */
  "services:resolve": (ctx: FlashContext, services: string[]) => void | Promise<void>;
  /** Probes tried in order to find the new image's boot partition. Mutate the array. */
  "partitions:probe": (ctx: FlashContext, probes: PartitionProbe[]) => void | Promise<void>;
  /** Files about to be written on the new image's boot partition. Mutate the array. */
  "customize:payloads": (ctx: FlashContext, files: BootFile[]) => void | Promise<void>;
  /** Around every phase of a mode (facts, plan, confirm, stage, quiesce, handoff, wait). */
  "phase:before": (ctx: FlashContext, phase: string) => void | Promise<void>;
  "phase:after": (ctx: FlashContext, phase: string, ms: number) => void | Promise<void>;
}

export type FlashHookable = Hookable<FlashHooks>;

export function createFlashHooks(): FlashHookable {
  return createHooks<FlashHooks>();
}
