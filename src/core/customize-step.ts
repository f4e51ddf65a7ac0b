import type { Extent } from "../image/scan.ts";

/** The customization, computed on the sending side before anything on the board changes. */
export interface PreparedCustomization {
  mechanism: "cloud-init" | "firstrun";
  /** Sectors written over the image right after it (absolute disk offsets). */
  extents: Extent[];
  /** One line for the confirmation summary. */
  summary: string;
}
