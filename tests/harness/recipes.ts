/**
 * The board images. Everything that decides an image's bytes is here or in build-tree.ts,
 * build-image.ts and rootfs/: their content is hashed into the cache key (see build-image.ts).
 */
export type ImageName = "A" | "B" | "B-cloud" | "B-gpt" | "L" | "L2" | "L-gpt";

export interface ImageRecipe {
  name: ImageName;
  /** Content of /etc/image-id (and the hostname, lower-cased): what a test reads to know which image runs. */
  marker: string;
  /** systemd: Debian's full boot (A/B). light: PID 1 = busybox init + rootfs/light/etc/init.d/rcS. */
  flavor: "systemd" | "light";
  /** Which shared chroot tree the root filesystem starts from (build-tree.ts). */
  tree: "base" | "cloud";
  table: "dos" | "gpt";
  /** Whole image, MiB. TCG writes ~10 MB/s, so every MiB here costs flash time in every test. */
  diskMiB: number;
  /** Partition 1 (FAT32, label bootfs). */
  bootMiB: number;
}

const systemd = { flavor: "systemd", tree: "base", table: "dos", diskMiB: 1024, bootMiB: 128 } as const;
const light = { flavor: "light", tree: "base", table: "dos", diskMiB: 320, bootMiB: 64 } as const;

export const IMAGES: Record<ImageName, ImageRecipe> = {
  A: { name: "A", marker: "A", ...systemd },
  B: { name: "B", marker: "B", ...systemd },
  // Smaller than A's disk, as most images are: its root holds 377 MiB of 640, and each 256 MiB more
  // cost every cloud-init flash a write and a read-back of them (on a board's CPU under TCG).
  "B-cloud": { name: "B-cloud", marker: "B-cloud", ...systemd, tree: "cloud", diskMiB: 768 },
  "B-gpt": { name: "B-gpt", marker: "B-gpt", ...systemd, table: "gpt" },
  L: { name: "L", marker: "L", ...light },
  L2: { name: "L2", marker: "L2", ...light },
  "L-gpt": { name: "L-gpt", marker: "L-gpt", ...light, table: "gpt" },
};

export const IMAGE_NAMES = Object.keys(IMAGES) as ImageName[];

export function isImageName(name: string): name is ImageName {
  return Object.hasOwn(IMAGES, name);
}

/** Users in every image. Both log in with the suite key; the passwords exist for sudo/password tests. */
export const BOARD_USERS = {
  /** Passwordless sudo, like Raspberry Pi OS's first user. */
  pi: { password: "pi-password" },
  /** sudo NEEDS a password: for cases where flash-live must refuse (no `sudo -n`). */
  strict: { password: "strict-password" },
} as const;

/** Written to /etc/flash-live-test-board in every image; board.ts refuses to run commands where it is missing. */
export const BOARD_MARKER_PATH = "/etc/flash-live-test-board";
export const BOARD_MARKER_TEXT = "This machine is a disposable flash-live test board. Destroying it is its purpose.\n";

