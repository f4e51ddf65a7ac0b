import factsScript from "../helpers/facts.sh" with { type: "text" };
import type { Target } from "../target/types.ts";

/** Everything flash-live knows about a board, from one run of src/helpers/facts.sh. */
export interface BlockDev {
  name: string;
  majmin: string;
  sizeBytes: number;
  kind: "disk" | "part" | "dm" | "md" | "loop" | "ram" | "zram";
  partNo?: number;
  startSector?: number;
  parent?: string;
  readOnly: boolean;
  removable: boolean;
  model?: string;
}

export interface Mount {
  majmin: string;
  mountPoint: string;
  fstype: string;
  source: string;
  options: string;
}

export interface RootInfo {
  mount: Mount;
  /** The block device holding the root filesystem (a partition, or a whole disk). */
  device?: BlockDev;
  /** The disk flash-live would overwrite. */
  disk?: BlockDev;
  /** Why flash-live cannot own this root safely; set means refuse. */
  problem?: string;
}

export interface TargetFacts {
  uid: number;
  user: string;
  sudo: "root" | "ok" | "password" | "missing";
  arch: string;
  /** Online CPUs (1 when unknown): on one CPU, SSH decryption and decompression take turns. */
  cpus: number;
  kernel: string;
  hostname: string;
  bootId: string;
  model?: string;
  os?: string;
  /** Content of /etc/flash-live-test-board: present only on the test harness's QEMU boards. */
  testBoard?: string;
  cmdline: string;
  memTotal: number;
  memAvailable: number;
  shmAvail: number;
  shmFsType?: string;
  mounts: Mount[];
  blocks: BlockDev[];
  swaps: string[];
  tools: string[];
  init: string;
  /** Active systemd service and socket units. */
  units: string[];
  /** Local mode: major:minor of the device holding the image file. */
  imageDev?: string;
  root: RootInfo;
  /** Partitions of the target disk. */
  diskPartitions: BlockDev[];
  /** Mounts of the target disk's partitions (root included). */
  diskMounts: Mount[];
}

export async function gatherFacts(target: Target, imagePathOnTarget?: string): Promise<TargetFacts> {
  const argv = ["sh", "-s", "--"];
  if (imagePathOnTarget) argv.push(imagePathOnTarget);
  const res = await target.exec(argv, { stdin: factsScript, check: false });
  if (!res.stdout.includes("\nend=1")) {
    throw new Error(`the facts script did not finish on ${target.name} (exit ${res.code}): ${res.stderr.trim().slice(-500)}`);
  }
  return parseFacts(res.stdout);
}

/** Pure: facts.sh output -> TargetFacts. */
export function parseFacts(text: string): TargetFacts {
  const one = new Map<string, string>();
  const many = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const eq = line.indexOf("=");
    if (eq <= 0) continue;
    const k = line.slice(0, eq);
    const v = line.slice(eq + 1);
    one.set(k, v);
    many.set(k, [...(many.get(k) ?? []), v]);
  }
  const get = (k: string) => one.get(k) ?? "";
  const mounts: Mount[] = (many.get("mount") ?? []).map((l) => {
    const [majmin, mountPoint, fstype, source, options] = l.split(" ");
    return { majmin: majmin!, mountPoint: unescapeMount(mountPoint!), fstype: fstype!, source: unescapeMount(source ?? ""), options: options ?? "" };
  });
  const blocks: BlockDev[] = (many.get("block") ?? []).map((l) => {
    const [name, majmin, size, kind, part, start, parent, ro, removable, model] = l.split(" ");
    return {
      name: name!,
      majmin: majmin!,
      sizeBytes: Number(size) * 512,
      kind: kind as BlockDev["kind"],
      partNo: part && part !== "-" ? Number(part) : undefined,
      startSector: start && start !== "-" ? Number(start) : undefined,
      parent: parent && parent !== "-" ? parent : undefined,
      readOnly: ro === "1",
      removable: removable === "1",
      model: model && model !== "-" ? model.replaceAll("_", " ").trim() : undefined,
    };
  });
  const kib = (k: string) => Number(get(k) || 0) * 1024;
  const imageDevNum = get("image_dev");
  const facts: Omit<TargetFacts, "root" | "diskPartitions" | "diskMounts"> = {
    uid: Number(get("uid")),
    user: get("user"),
    sudo: (get("sudo") || "missing") as TargetFacts["sudo"],
    arch: get("arch"),
    cpus: Math.max(1, Number(get("cpus")) || 1),
    kernel: get("kernel"),
    hostname: get("hostname"),
    bootId: get("boot_id"),
    model: one.get("model")?.trim() || undefined,
    os: one.get("os") || undefined,
    testBoard: one.get("test_board") || undefined,
    cmdline: get("cmdline"),
    memTotal: kib("mem_MemTotal"),
    memAvailable: kib("mem_MemAvailable"),
    shmAvail: kib("shm_avail_kib"),
    shmFsType: one.get("shm_fstype") || undefined,
    mounts,
    blocks,
    swaps: many.get("swap") ?? [],
    tools: many.get("tool") ?? [],
    init: get("init"),
    units: many.get("unit") ?? [],
    imageDev: imageDevNum && imageDevNum !== "-" ? devToMajMin(Number(imageDevNum)) : undefined,
  };
  const root = resolveRoot(facts);
  const disk = root.disk;
  const diskPartitions = disk ? blocks.filter((b) => b.kind === "part" && b.parent === disk.name) : [];
  const onDisk = new Set([disk?.majmin, ...diskPartitions.map((p) => p.majmin)].filter(Boolean));
  const diskMounts = mounts.filter((m) => onDisk.has(m.majmin));
  return { ...facts, root, diskPartitions, diskMounts };
}

/** Linux's new_decode_dev: st_dev -> "major:minor". */
export function devToMajMin(dev: number): string {
  const big = BigInt(dev);
  const major = Number(((big >> 8n) & 0xfffn) | ((big >> 32n) & ~0xfffn));
  const minor = Number((big & 0xffn) | ((big >> 12n) & ~0xffn));
  return `${major}:${minor}`;
}

const NETWORK_FS = new Set(["nfs", "nfs4", "cifs", "smb3", "9p", "virtiofs", "ceph", "glusterfs", "sshfs", "fuse.sshfs"]);

/**
 * Which disk holds the running root, or why flash-live must not guess. mountinfo gives the device
 * number of the root even when the mount source reads /dev/root or PARTUUID=...; the disk is the
 * partition's parent in sysfs, so a name like mmcblk0p2 or nvme0n1p2 is never parsed by hand.
 */
export function resolveRoot(f: Pick<TargetFacts, "mounts" | "blocks" | "cmdline">): RootInfo {
  const rootMounts = f.mounts.filter((m) => m.mountPoint === "/");
  const mount = rootMounts.at(-1);
  if (!mount) return { mount: { majmin: "0:0", mountPoint: "/", fstype: "?", source: "?", options: "" }, problem: "no root filesystem found in /proc/self/mountinfo" };
  const byMajMin = (mm: string) => f.blocks.find((b) => b.majmin === mm);
  const byName = (n: string) => f.blocks.find((b) => b.name === n);
  if (NETWORK_FS.has(mount.fstype)) {
    return { mount, problem: `the root filesystem is on the network (${mount.fstype} from ${mount.source}); there is no local disk to re-flash` };
  }
  let device = byMajMin(mount.majmin);
  if (!device && mount.fstype === "overlay") {
    // Raspberry Pi OS's overlay root keeps the real root read-only at /media/root-ro.
    const lower = f.mounts.find((m) => m.mountPoint === "/media/root-ro" || m.mountPoint === "/ro" || m.mountPoint === "/rom");
    device = lower ? byMajMin(lower.majmin) : undefined;
    if (!device) return { mount, problem: "the root filesystem is an overlay and its lower (real) device cannot be identified" };
  }
  if (!device && mount.source.startsWith("/dev/")) {
    // btrfs and others report an anonymous device number: fall back to the source name.
    device = byName(mount.source.slice(5).replace(/^mapper\//, ""));
  }
  if (!device && mount.source === "/dev/root") {
    const root = /(?:^|\s)root=(\S+)/.exec(f.cmdline)?.[1];
    if (root?.startsWith("/dev/")) device = byName(root.slice(5));
  }
  if (!device) return { mount, problem: `cannot tell which block device holds the root filesystem (${mount.fstype} on ${mount.source}, device ${mount.majmin})` };
  if (device.kind === "dm") return { mount, device, problem: `the root filesystem is on device-mapper (${device.name}: LVM, LUKS or similar); flash-live only re-flashes a root on a plain disk partition` };
  if (device.kind === "md") return { mount, device, problem: `the root filesystem is on software RAID (${device.name})` };
  if (device.kind === "loop" || device.kind === "ram" || device.kind === "zram") {
    return { mount, device, problem: `the root filesystem is on a ${device.kind} device (${device.name}), not on a disk` };
  }
  const disk = device.kind === "part" ? byName(device.parent ?? "") : device;
  if (!disk || disk.kind !== "disk") return { mount, device, problem: `cannot find the disk that holds ${device.name}` };
  // The boot partition (kernel, firmware) must live on the same disk: re-flashing one disk of two
  // would leave a board that boots the old kernel against the new root, or not at all.
  for (const mp of ["/boot/firmware", "/boot/efi", "/boot"]) {
    const bm = f.mounts.filter((m) => m.mountPoint === mp).at(-1);
    if (!bm) continue;
    const bdev = byMajMin(bm.majmin);
    if (!bdev) continue;
    const bdisk = bdev.kind === "part" ? bdev.parent : bdev.name;
    if (bdisk !== disk.name) {
      return { mount, device, disk, problem: `the boot partition ${mp} is on ${bdisk}, a different disk than the root (${disk.name}); flash-live will not re-flash one disk of a split system` };
    }
  }
  return { mount, device, disk };
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(Number.parseInt(o, 8)));
}
