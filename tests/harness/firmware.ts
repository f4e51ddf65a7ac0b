import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { run } from "./_run.ts";
import { type DiskFormat, extractRange, parsePartitionTable, readRange } from "./disk.ts";

/**
 * The board's "firmware": what a Raspberry Pi's boot ROM + start.elf do, for QEMU. Before EVERY
 * boot it reads partition 1 (FAT) of the board's CURRENT disk: config.txt names the kernel and
 * initramfs, cmdline.txt the command line. So after a flash the board boots the NEW image's kernel
 * and command line, and a `systemd.run=` added to cmdline.txt runs, as on a Pi.
 */
export interface BootFiles {
  kernel: string;
  initrd?: string;
  cmdline: string;
}

export class FirmwareError extends Error {
  override name = "FirmwareError";
}

export async function loadBootFiles(disk: string, format: DiskFormat, workDir: string): Promise<BootFiles> {
  mkdirSync(workDir, { recursive: true });
  const head = await readRange(disk, format, 0, 64 * 1024, join(workDir, "head.raw"));
  const part = parsePartitionTable(head).find((p) => p.number === 1);
  if (!part) throw new FirmwareError(`${disk}: no partition 1 (no partition table?): nothing to boot`);

  // mtools reads the FAT in place for raw disks (file@@offset); qcow2 needs the partition as raw.
  let fat = `${disk}@@${part.start}`;
  if (format !== "raw") {
    const fatFile = join(workDir, "bootfs.raw");
    await extractRange(disk, format, part.start, part.size, fatFile);
    fat = fatFile;
  }
  try {
    const get = async (name: string, out: string): Promise<string> => {
      const r = await run(["mcopy", "-n", "-o", "-i", fat, `::/${name}`, out], { check: false });
      if (r.code !== 0) throw new FirmwareError(`${disk}: cannot read ${name} from the boot partition: ${r.stderr.trim()}`);
      return out;
    };
    const config = parseConfigTxt(readFileSync(await get("config.txt", join(workDir, "config.txt")), "utf8"));
    const kernel = await get(config.kernel, join(workDir, "kernel"));
    const initrd = config.initramfs ? await get(config.initramfs, join(workDir, "initrd")) : undefined;
    const cmdline = readFileSync(await get(config.cmdline, join(workDir, "cmdline.txt")), "utf8").split("\n")[0]!.trim();
    return { kernel, initrd, cmdline };
  } finally {
    if (format !== "raw") rmSync(fat, { force: true });
  }
}

/** The part of a Pi's config.txt this firmware understands: kernel=, initramfs FILE, cmdline=, in [all]. */
export function parseConfigTxt(text: string): { kernel: string; initramfs?: string; cmdline: string } {
  const out: { kernel: string; initramfs?: string; cmdline: string } = { kernel: "vmlinuz", cmdline: "cmdline.txt" };
  let active = true;
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*/, "").trim();
    if (!line) continue;
    const section = /^\[(.+)\]$/.exec(line);
    if (section) {
      active = section[1] === "all";
      continue;
    }
    if (!active) continue;
    const initramfs = /^initramfs\s+(\S+)/.exec(line);
    if (initramfs) out.initramfs = initramfs[1];
    const kv = /^(kernel|cmdline)\s*=\s*(\S+)$/.exec(line);
    if (kv) out[kv[1] as "kernel" | "cmdline"] = kv[2]!;
  }
  return out;
}
