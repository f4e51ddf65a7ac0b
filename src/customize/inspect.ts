import type { CustomizeWith } from "../config/schema.ts";
import { UserError } from "../errors.ts";
import type { BootBytes } from "./bytes.ts";
import { FatVolume, type FatType } from "./fat.ts";

export type BootDir = "/boot/firmware" | "/boot";
export type Mechanism = "cloud-init" | "firstrun";

export interface BootInspection {
  fatType: FatType;
  label?: string;
  /** Names in the partition's root directory, as stored. */
  files: string[];
  /** cmdline.txt content, when present. */
  cmdline?: string;
  /** config.txt content, when present. */
  configTxt?: string;
  /** The image's own cloud-init network-config, when present (merged, not dropped, when Wi-Fi is added). */
  networkConfig?: string;
  /** Where the new system mounts this partition: firstrun.sh is started by that path. */
  bootDirOnImage: BootDir;
  bootDirReason: string;
  cloudInit: { used: boolean; evidence: string[] };
  /** "raspberry-pi-os" when the partition carries Raspberry Pi OS's issue.txt. */
  os?: "raspberry-pi-os";
}

/**
 * What the image's boot partition says about how to customize it. Reads only; works on a sparse
 * copy of the partition (see SparseBytes).
 *
 * cloud-init is taken as used when `user-data` or `meta-data` is on the partition: images that
 * read a NoCloud seed from their boot partition ship them there (Raspberry Pi OS's cloud-init
 * images do; so does the test image B-cloud). `--customize-with` overrides.
 */
export async function inspectBootPartition(boot: BootBytes): Promise<BootInspection> {
  const vol = await FatVolume.open(boot);
  try {
    const files = vol.list("/").map((e) => e.name);
    const has = (n: string) => files.some((f) => f.toLowerCase() === n);
    const cmdline = vol.readText("cmdline.txt");
    const configTxt = vol.readText("config.txt");
    const issue = vol.readText("issue.txt");
    const networkConfig = vol.readText("network-config");

    const evidence = ["user-data", "meta-data"].filter(has).map((f) => `${f} on the boot partition`);
    if (cmdline && /(^|\s)ds=nocloud/.test(cmdline)) evidence.push("ds=nocloud on the kernel command line");

    const os = issue && /Raspberry Pi reference/i.test(issue) ? ("raspberry-pi-os" as const) : undefined;
    const [bootDirOnImage, bootDirReason] = decideBootDir(configTxt, files, os !== undefined);
    return {
      fatType: vol.boot.fatType,
      label: vol.boot.label,
      files,
      cmdline,
      configTxt,
      networkConfig,
      bootDirOnImage,
      bootDirReason,
      cloudInit: { used: evidence.length > 0, evidence },
      os,
    };
  } finally {
    vol.unmount();
  }
}

export interface MechanismChoice {
  mechanism: Mechanism;
  reason: string;
}

/**
 * cloud-init when the image uses it, else firstrun.sh (needs cmdline.txt). `override`
 * (`--customize-with`) wins, but firstrun.sh still needs a cmdline.txt to start it. Throws
 * UserError when the image cannot be customized, so the caller refuses before anything is
 * destroyed.
 */
export function chooseMechanism(inspection: BootInspection | undefined, override: CustomizeWith = "auto"): MechanismChoice {
  if (!inspection) refuseNoBootPartition();
  const firstrunPossible = inspection.cmdline !== undefined;
  if (override === "cloud-init") return { mechanism: "cloud-init", reason: "--customize-with cloud-init" };
  if (override === "firstrun") {
    if (!firstrunPossible) {
      throw new UserError(
        "--customize-with firstrun needs a cmdline.txt on the image's boot partition (firstrun.sh is started from the kernel command line).",
        "Use --customize-with cloud-init if the image runs cloud-init, or flash without --config.",
      );
    }
    return { mechanism: "firstrun", reason: "--customize-with firstrun" };
  }
  if (inspection.cloudInit.used) return { mechanism: "cloud-init", reason: `image uses cloud-init (${inspection.cloudInit.evidence.join(", ")})` };
  if (firstrunPossible) return { mechanism: "firstrun", reason: "no cloud-init seed on the boot partition; cmdline.txt present" };
  throw new UserError(
    "The image's boot partition has neither cloud-init seed files (user-data, meta-data) nor a cmdline.txt, so there is no way to customize it.",
    "Flash it without --config, or force a mechanism with --customize-with cloud-init if you know the image reads a NoCloud seed from that partition.",
  );
}

export function refuseNoBootPartition(): never {
  throw new UserError(
    "The image has no FAT boot partition, so it cannot be customized.",
    "Flash it without --config, or use an image laid out like Raspberry Pi OS (FAT boot partition first).",
  );
}

// --- internal ---

function decideBootDir(configTxt: string | undefined, files: readonly string[], isRpiOs: boolean): [BootDir, string] {
  // FIELD-NOTES §1: Raspberry Pi OS moved the boot partition to /boot/firmware together with
  // auto_initramfs=1 in config.txt (bookworm); a Raspberry Pi OS boot partition without it is an
  // older release that mounts it at /boot. Anything else (Debian/Ubuntu Pi images, boards laid out
  // like a Pi) uses /boot/firmware.
  if (configTxt !== undefined && /^\s*auto_initramfs\s*=\s*1\s*$/m.test(configTxt)) return ["/boot/firmware", "config.txt has auto_initramfs=1"];
  const piFirmware = files.some((f) => /^(bootcode\.bin|start\w*\.elf)$/i.test(f));
  if (configTxt !== undefined && (isRpiOs || piFirmware)) {
    return ["/boot", "Raspberry Pi boot files and a config.txt without auto_initramfs=1 (Raspberry Pi OS before bookworm)"];
  }
  return ["/boot/firmware", "not an older Raspberry Pi OS; the current layout"];
}
