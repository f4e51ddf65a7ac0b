import type { Target } from "../target/types.ts";
import type { FlashHookable } from "./hooks.ts";

/** Shared state of one run of a mode. Filled in phase by phase; plugins read it. */
export interface FlashContext {
  target: Target;
  hooks: FlashHookable;
  /** Warnings collected during the run, summarised once at the end. */
  warnings: string[];
  /** Filled by the facts phase (src/core/facts.ts). */
  facts?: import("./facts.ts").TargetFacts;
  /** Filled by the plan phase. */
  plan?: import("./plan.ts").Plan;
}
