// Test images built with the real tools (mkfs.fat, mtools, sfdisk): no loop mounts, this machine's
// kernel has no vfat (FIELD-NOTES §2).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export function run(cmd: string[], opts: { stdin?: string | Uint8Array; ok?: boolean } = {}): { code: number; stdout: string; stderr: string } {
  const p = Bun.spawnSync(cmd, { stdin: opts.stdin === undefined ? "ignore" : Buffer.from(opts.stdin), stdout: "pipe", stderr: "pipe" });
  const r = { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
  if (opts.ok !== false && r.code !== 0) throw new Error(`${cmd.join(" ")} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return r;
}

export function tempDir(prefix = "fl-customize-"): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Files to put on a FAT volume: name -> content. Names with "/" go into directories. */
export type FatFiles = Record<string, string | Uint8Array>;

/** A FAT partition image (mkfs.fat) with `files` copied in by mtools. */
export function makeFatPartition(dir: string, opts: { sizeMiB: number; files?: FatFiles; fat?: 12 | 16 | 32; label?: string; name?: string }): string {
  const path = join(dir, opts.name ?? "boot.img");
  rmSync(path, { force: true });
  run(["mkfs.fat", "-C", "-F", String(opts.fat ?? 32), "-n", opts.label ?? "bootfs", path, String(opts.sizeMiB * 1024)]);
  copyFiles(dir, path, opts.files ?? {});
  return path;
}

export interface DiskOptions {
  table: "dos" | "gpt";
  sizeMiB: number;
  bootStartMiB?: number;
  bootSizeMiB: number;
  files?: FatFiles;
  /** MBR type of partition 1 (default c) or GPT type GUID (default basic data). */
  bootType?: string;
}

/** A disk image like a Raspberry Pi image: partition 1 FAT32 "bootfs", partition 2 Linux. */
export function makeDiskImage(dir: string, opts: DiskOptions, name = "disk.img"): { path: string; bootOffset: number } {
  const path = join(dir, name);
  rmSync(path, { force: true });
  run(["truncate", "-s", `${opts.sizeMiB}M`, path]);
  const start = (opts.bootStartMiB ?? 4) * 2048;
  const size = opts.bootSizeMiB * 2048;
  const p1type = opts.bootType ?? (opts.table === "dos" ? "c" : "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7");
  const p2type = opts.table === "dos" ? "83" : "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
  const script = `label: ${opts.table}\nstart=${start}, size=${size}, type=${p1type}\nstart=${start + size}, type=${p2type}\n`;
  run(["sfdisk", "-q", path], { stdin: script });
  run(["mkfs.fat", "-F", "32", "-n", "bootfs", "--offset", String(start), path, String(opts.bootSizeMiB * 1024)]);
  copyFiles(dir, `${path}@@${start * 512}`, opts.files ?? {});
  return { path, bootOffset: start * 512 };
}

function copyFiles(dir: string, image: string, files: FatFiles): void {
  const staging = join(dir, "staging-file");
  for (const [name, content] of Object.entries(files)) {
    const parts = name.split("/");
    for (let i = 1; i < parts.length; i++) run(["mmd", "-D", "s", "-i", image, `::${parts.slice(0, i).join("/")}`], { ok: false });
    writeFileSync(staging, content);
    run(["mcopy", "-o", "-i", image, staging, `::${name}`]);
  }
  rmSync(staging, { force: true });
}

export function mdir(image: string): string {
  return run(["mdir", "-b", "-i", image, "::"]).stdout;
}

export function mtype(image: string, name: string): string {
  return run(["mtype", "-i", image, `::${name}`]).stdout;
}

export function fsckClean(image: string): { ok: boolean; output: string } {
  const r = run(["fsck.fat", "-n", image], { ok: false });
  return { ok: r.code === 0, output: r.stdout + r.stderr };
}

export function readBytes(path: string): Uint8Array {
  return new Uint8Array(readFileSync(path));
}

/** A cmdline.txt and config.txt as Raspberry Pi OS bookworm/trixie ship them. */
export const RPI_CMDLINE = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait quiet splash plymouth.ignore-serial-consoles\n";
export const RPI_CONFIG_TXT = "# For more options and information see\n# http://rptl.io/configtxt\ndtparam=audio=on\ncamera_auto_detect=1\ndisplay_auto_detect=1\nauto_initramfs=1\ndtoverlay=vc4-kms-v3d\nmax_framebuffers=2\narm_64bit=1\n";
