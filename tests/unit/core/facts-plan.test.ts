import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { devToMajMin, gatherFacts, parseFacts, resolveRoot } from "../../../src/core/facts.ts";
import { planFlash, resolveUnits, SHM_MARGIN } from "../../../src/core/plan.ts";
import { createFakeTarget } from "../../fakes/fake-target.ts";

const fixture = (name: string) => readFileSync(join(import.meta.dir, "../../fixtures/facts", name), "utf8");
const GiB = 1 << 30;

describe("facts", () => {
  test("Raspberry Pi on SD: root mmcblk0p2 -> disk mmcblk0, boot on the same disk", () => {
    const f = parseFacts(fixture("pi-mmc.txt"));
    expect(f.root.problem).toBeUndefined();
    expect(f.root.device?.name).toBe("mmcblk0p2");
    expect(f.root.disk?.name).toBe("mmcblk0");
    expect(f.root.disk?.sizeBytes).toBe(62333952 * 512);
    expect(f.diskPartitions.map((p) => p.name)).toEqual(["mmcblk0p1", "mmcblk0p2"]);
    expect(f.diskMounts.map((m) => m.mountPoint).sort()).toEqual(["/", "/boot/firmware"]);
    expect(f.sudo).toBe("ok");
    expect(f.model).toBe("Raspberry Pi 4 Model B Rev 1.5");
    expect(f.shmAvail).toBe(1942448 * 1024);
    expect(f.blocks.find((b) => b.name === "sda")?.model).toBe("Cruzer Blade");
  });

  test("LVM root is refused with the reason", () => {
    const f = parseFacts(fixture("lvm.txt"));
    expect(f.root.problem).toContain("device-mapper");
  });

  const base = {
    cmdline: "",
    blocks: [
      { name: "nvme0n1", majmin: "259:0", sizeBytes: 8 * GiB, kind: "disk" as const, readOnly: false, removable: false },
      { name: "nvme0n1p1", majmin: "259:1", sizeBytes: GiB / 2, kind: "part" as const, partNo: 1, parent: "nvme0n1", readOnly: false, removable: false },
      { name: "nvme0n1p2", majmin: "259:2", sizeBytes: 7 * GiB, kind: "part" as const, partNo: 2, parent: "nvme0n1", readOnly: false, removable: false },
      { name: "sda", majmin: "8:0", sizeBytes: 16 * GiB, kind: "disk" as const, readOnly: false, removable: true },
      { name: "sda1", majmin: "8:1", sizeBytes: 16 * GiB, kind: "part" as const, partNo: 1, parent: "sda", readOnly: false, removable: true },
    ],
  };
  const mount = (majmin: string, mountPoint: string, fstype: string, source: string) => ({ majmin, mountPoint, fstype, source, options: "rw" });

  test("NVMe root found by device number even when the source reads /dev/root", () => {
    const r = resolveRoot({ ...base, mounts: [mount("259:2", "/", "ext4", "/dev/root")] });
    expect(r.problem).toBeUndefined();
    expect(r.disk?.name).toBe("nvme0n1");
  });

  test("NFS root, overlay without a lower device, and a boot partition on another disk are refused", () => {
    expect(resolveRoot({ ...base, mounts: [mount("0:40", "/", "nfs4", "10.0.0.1:/srv/root")] }).problem).toContain("network");
    expect(resolveRoot({ ...base, mounts: [mount("0:41", "/", "overlay", "overlay")] }).problem).toContain("overlay");
    const split = resolveRoot({ ...base, mounts: [mount("259:2", "/", "ext4", "/dev/nvme0n1p2"), mount("8:1", "/boot/firmware", "vfat", "/dev/sda1")] });
    expect(split.problem).toContain("different disk");
  });

  test("overlay root with the real root at /media/root-ro resolves to its disk", () => {
    const r = resolveRoot({ ...base, mounts: [mount("259:2", "/media/root-ro", "ext4", "/dev/nvme0n1p2"), mount("0:41", "/", "overlay", "overlay")] });
    expect(r.problem).toBeUndefined();
    expect(r.disk?.name).toBe("nvme0n1");
  });

  test("st_dev decoding matches Linux's new_decode_dev", () => {
    expect(devToMajMin(0x10302)).toBe("259:2"); // nvme0n1p2 = 259:2 -> (259 << 8) | 2
    expect(devToMajMin(65024)).toBe("254:0");
    expect(devToMajMin(0xb302)).toBe("179:2");
  });

  test("gatherFacts pipes facts.sh to sh -s on the target and passes the image path as an argument", async () => {
    const t = createFakeTarget({ "sh -s --": { stdout: fixture("pi-mmc.txt") }, "sh -s -- /mnt/usb/img.xz": { stdout: `${fixture("pi-mmc.txt")}\nimage_dev=2049\n` } });
    const f = await gatherFacts(t);
    expect(f.hostname).toBe("halos");
    expect(t.calls[0]!.stdin).toContain("/proc/self/mountinfo");
    const g = await gatherFacts(t, "/mnt/usb/img.xz");
    expect(g.imageDev).toBe("8:1");
  });
});

describe("plan", () => {
  const facts = () => parseFacts(fixture("pi-mmc.txt"));
  const image = (rawSize: number, fileSize = rawSize / 4, format: "xz" | "zstd" | "raw" = "xz") => ({ path: "/x/img", format, fileSize, rawSize });

  test("remote default is ramfs when the image fits in /dev/shm", () => {
    const p = planFlash({ facts: facts(), image: image(4 * GiB, 900 << 20), local: false, mode: "auto", servicePatterns: [] });
    expect(p.refusals).toEqual([]);
    expect(p.mode).toBe("ramfs");
    expect(p.diskPath).toBe("/dev/mmcblk0");
    expect(p.codec).toBe("xz");
    expect(p.freezeMounts).toEqual(["/"]);
    expect(p.roMounts).toEqual(["/boot/firmware"]);
  });

  test("remote ramfs that does not fit is refused with the numbers and the --stream hint", () => {
    const f = facts();
    const p = planFlash({ facts: f, image: image(20 * GiB, f.shmAvail), local: false, mode: "auto", servicePatterns: [] });
    expect(p.refusals.join()).toContain("--stream");
    expect(p.refusals.join()).toContain("free in /dev/shm");
  });

  test("image larger than the disk is refused with both sizes", () => {
    const p = planFlash({ facts: facts(), image: image(64 * GiB, GiB), local: false, mode: "stream", servicePatterns: [] });
    expect(p.refusals.some((r) => r.includes("larger than the disk") && r.includes(String(62333952 * 512)))).toBe(true);
  });

  test("local: ramfs when it fits, else stream from another disk, else refuse", () => {
    const f = facts();
    const fits = planFlash({ facts: f, image: image(2 * GiB, 500 << 20), local: true, mode: "auto", servicePatterns: [] });
    expect(fits.mode).toBe("ramfs");
    const big = f.shmAvail - SHM_MARGIN + 1;
    const onUsb = planFlash({ facts: { ...f, imageDev: "8:1" }, image: image(8 * GiB, big), local: true, mode: "auto", servicePatterns: [] });
    expect(onUsb.mode).toBe("stream");
    expect(onUsb.refusals).toEqual([]);
    const onRoot = planFlash({ facts: { ...f, imageDev: "179:2" }, image: image(8 * GiB, big), local: true, mode: "auto", servicePatterns: [] });
    expect(onRoot.refusals.join()).toContain("lives on the disk being flashed");
    const forcedStream = planFlash({ facts: { ...f, imageDev: "179:2" }, image: image(GiB, GiB / 4), local: true, mode: "stream", servicePatterns: [] });
    expect(forcedStream.refusals.join()).toContain("USB stick");
  });

  test("zstd is re-encoded for the board, and refused in local stream mode", () => {
    const f = facts();
    const p = planFlash({ facts: f, image: image(GiB, GiB / 5, "zstd"), local: false, mode: "stream", servicePatterns: [] });
    expect(p.codec).toBe("gz");
    expect(p.transcode).toBe(true);
    const l = planFlash({ facts: { ...f, imageDev: "8:1" }, image: image(GiB, GiB / 5, "zstd"), local: true, mode: "stream", servicePatterns: [] });
    expect(l.refusals.join()).toContain("zstd");
  });

  test("sudo needing a password, and the harness on a non-board, are refused", () => {
    const f = { ...facts(), sudo: "password" as const };
    const p = planFlash({ facts: f, image: image(GiB), local: false, mode: "auto", servicePatterns: [], harness: true });
    expect(p.refusals.join()).toContain("sudo");
    expect(p.refusals.join()).toContain("test harness");
  });

  test("service patterns match unit names, sockets first", () => {
    const units = resolveUnits(["container-*", "marine-*", "halos-*", "cockpit", "docker"], facts().units);
    expect(units).toEqual(["cockpit.socket", "docker.socket", "container-signalk.service", "marine-nmea.service", "docker.service"]);
  });
});
