/**
 * The static busybox flash-live carries to the target: Debian's busybox-static from the suite below,
 * pinned by exact version and sha256 of the .deb. Rewritten by `bun scripts/fetch-busybox.ts
 * --update-pins`, which takes the values from the suite's Packages index after checking the chain
 * InRelease (gpgv, debian-archive-keyring) -> Packages.xz sha256 -> .deb sha256.
 *
 * Why these arches: armhf (ARMv7+) dies with SIGILL on ARMv6 boards (Pi Zero/1 running 32-bit
 * Raspberry Pi OS), so those get armel (ARMv5TE baseline).
 */
export const BUSYBOX_SUITE = "trixie";

export const BUSYBOX_PINS = {
  amd64: {
    version: "1:1.37.0-6+b9",
    filename: "pool/main/b/busybox/busybox-static_1.37.0-6+b9_amd64.deb",
    size: 955316,
    sha256: "598a3fd92bdafc34cd81196b2952ad36e910e47a4ecf162f8ce5e8e262598e53",
  },
  arm64: {
    version: "1:1.37.0-6+b9",
    filename: "pool/main/b/busybox/busybox-static_1.37.0-6+b9_arm64.deb",
    size: 847552,
    sha256: "c833be48abfa16bc19c4966ec93e289ff1ce5d2f1476cad3a57bd105378cd15c",
  },
  armhf: {
    version: "1:1.37.0-6+b9",
    filename: "pool/main/b/busybox/busybox-static_1.37.0-6+b9_armhf.deb",
    size: 827896,
    sha256: "8b35210e08d559ecc0ddb660dd96f6f9694f69eb27f1dc608f5eeda56d94509e",
  },
  armel: {
    version: "1:1.37.0-6+b9",
    filename: "pool/main/b/busybox/busybox-static_1.37.0-6+b9_armel.deb",
    size: 829416,
    sha256: "f1fe993c6f6e36bef6e8bee505d04681661635c4c917e9d33b56984ebd9f9d31",
  },
  riscv64: {
    version: "1:1.37.0-6+b9",
    filename: "pool/main/b/busybox/busybox-static_1.37.0-6+b9_riscv64.deb",
    size: 941532,
    sha256: "4add476d2b185c5b487c285b38d790f0881a7e4a8e2ddde835f917e770eb8633",
  },
} as const satisfies Record<string, BusyboxPin>;

export interface BusyboxPin {
  /** Debian version, with epoch. */
  version: string;
  /** Path below the mirror root. */
  filename: string;
  size: number;
  sha256: string;
}

export type BusyboxArch = keyof typeof BUSYBOX_PINS;
