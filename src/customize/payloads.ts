import type { BootFile } from "../core/hooks.ts";
import { UserError } from "../errors.ts";
import { buildCloudInitFiles } from "./cloud-init.ts";
import { buildFirstrunScript, firstrunRunArgs } from "./firstrun.ts";
import { checkHostKey, type HostKey } from "./host-keys.ts";
import type { BootDir, BootInspection, Mechanism } from "./inspect.ts";
import type { ResolvedCustomization } from "./resolve.ts";

export interface PayloadOptions {
  mechanism: Mechanism;
  inspection: BootInspection;
  /** The board's host keys, required when keepHostKeys is set. */
  hostKeys?: readonly HostKey[];
  /** Where the new system mounts the boot partition, when the inspection's guess is wrong. */
  bootDir?: BootDir;
}

export interface Payloads {
  /** Files for the boot partition; the caller passes them through the `customize:payloads` hook. */
  files: BootFile[];
  /** Kernel arguments to append to cmdline.txt (without a leading space); undefined for none. */
  cmdlineAppend?: string;
}

/**
 * What goes on the new image's boot partition for one customization. Pure: secrets are already
 * hashed in `r`, host keys come from the caller.
 */
export function buildPayloads(r: ResolvedCustomization, opts: PayloadOptions): Payloads {
  const hostKeys = (opts.hostKeys ?? []).map(checkHostKey);
  if (r.keepHostKeys && hostKeys.length === 0) {
    throw new UserError("keep-host-keys needs the board's current host keys, and there are none to carry.", "Remove keep-host-keys (it only works when flashing a board, not with `customize`).");
  }
  const keys = r.keepHostKeys ? hostKeys : [];
  // Imager sets the Wi-Fi regulatory domain on the kernel command line for both formats.
  const regdom = r.wifiCountry ? `cfg80211.ieee80211_regdom=${r.wifiCountry}` : undefined;

  if (opts.mechanism === "cloud-init") {
    const inspection = opts.bootDir ? { ...opts.inspection, bootDirOnImage: opts.bootDir } : opts.inspection;
    return { files: buildCloudInitFiles(r, inspection, keys), cmdlineAppend: regdom };
  }

  const cmdline = opts.inspection.cmdline;
  if (cmdline === undefined) {
    throw new UserError("firstrun.sh needs a cmdline.txt on the image's boot partition.", "Use an image with cmdline.txt, or --customize-with cloud-init.");
  }
  if (/(^|\s)systemd\.run=/.test(cmdline)) {
    throw new UserError(
      "The image's cmdline.txt already starts a first-boot script (systemd.run=); a second one cannot be added.",
      "Use the image as its maker shipped it, or --customize-with cloud-init.",
    );
  }
  const bootDir = opts.bootDir ?? opts.inspection.bootDirOnImage;
  const runArgs = firstrunRunArgs(bootDir).trimStart();
  return {
    files: [{ path: "firstrun.sh", data: buildFirstrunScript(r, bootDir, keys) }],
    cmdlineAppend: regdom ? `${regdom} ${runArgs}` : runArgs,
  };
}
