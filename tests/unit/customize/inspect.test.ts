import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { chooseMechanism, inspectBootPartition, type BootInspection } from "../../../src/customize/inspect.ts";
import { locateBootPartition } from "../../../src/customize/partitions.ts";
import { UserError } from "../../../src/errors.ts";
import { makeDiskImage, makeFatPartition, readBytes, RPI_CMDLINE, RPI_CONFIG_TXT, run, tempDir } from "./_images.ts";

const tmp = tempDir();
afterAll(tmp.cleanup);

function head(path: string, n = 16 << 20): Uint8Array {
  return new Uint8Array(readFileSync(path).subarray(0, n));
}

/** sfdisk's own reading of the table: the oracle for start, size and type. */
function sfdisk(path: string): { label: string; partitions: { start: number; size: number; type: string }[] } {
  return JSON.parse(run(["sfdisk", "--json", path]).stdout).partitiontable;
}

describe("locateBootPartition", () => {
  test("MBR: matches sfdisk; partition 1 is the FAT boot partition, its label read from the boot sector", async () => {
    const { path } = makeDiskImage(tmp.dir, { table: "dos", sizeMiB: 96, bootSizeMiB: 64, files: { "cmdline.txt": RPI_CMDLINE } }, "mbr.img");
    const layout = await locateBootPartition(head(path));
    const oracle = sfdisk(path);
    expect(layout.table).toBe("mbr");
    expect(layout.partitions.map((p) => [p.index, p.start, p.size, p.type])).toEqual(
      oracle.partitions.map((p, i) => [i + 1, p.start * 512, p.size * 512, `0x${p.type.padStart(2, "0")}`]),
    );
    expect(layout.boot?.index).toBe(1);
    expect(layout.boot?.fat).toBe(true);
    expect(layout.boot?.label).toBe("bootfs");
    expect(layout.partitions[1].fat).toBe(false);
    expect(layout.bootReason).toBe("partition 1 is FAT");
  });

  test("GPT: matches sfdisk, basic-data type + FAT boot sector, GPT name as label", async () => {
    const { path } = makeDiskImage(tmp.dir, { table: "gpt", sizeMiB: 96, bootStartMiB: 1, bootSizeMiB: 64 }, "gpt.img");
    run(["sfdisk", "-q", "--part-label", path, "1", "bootfs"]);
    const layout = await locateBootPartition(head(path));
    const oracle = sfdisk(path);
    expect(layout.table).toBe("gpt");
    expect(layout.partitions.map((p) => [p.start, p.size, p.type])).toEqual(oracle.partitions.map((p) => [p.start * 512, p.size * 512, p.type]));
    expect(layout.boot?.index).toBe(1);
    expect(layout.boot?.label).toBe("bootfs");
  });

  test("partition 1 not FAT: the first FAT partition; none: no boot partition", async () => {
    const { path } = makeDiskImage(tmp.dir, { table: "dos", sizeMiB: 96, bootSizeMiB: 64 }, "swap.img");
    // Partition 1 becomes Linux and partition 2 FAT: swap their types and put a FAT into partition 2.
    run(["sfdisk", "-q", "--part-type", path, "1", "83"]);
    run(["sfdisk", "-q", "--part-type", path, "2", "c"]);
    const p2 = sfdisk(path).partitions[1];
    run(["mkfs.fat", "-F", "16", "--offset", String(p2.start), path, String(Math.floor(p2.size / 2))]);
    // Zero partition 1's boot sector so the evidence says "not FAT".
    run(["dd", "if=/dev/zero", `of=${path}`, "bs=512", `seek=${4 * 2048}`, "count=1", "conv=notrunc", "status=none"]);
    const layout = await locateBootPartition(head(path, 64 << 20));
    expect(layout.boot?.index).toBe(2);
    expect(layout.partitions[0].fat).toBe(false);

    const { path: none } = makeDiskImage(tmp.dir, { table: "dos", sizeMiB: 32, bootSizeMiB: 16, bootType: "83" }, "none.img");
    run(["dd", "if=/dev/zero", `of=${none}`, "bs=512", `seek=${4 * 2048}`, "count=1", "conv=notrunc", "status=none"]);
    const l2 = await locateBootPartition(head(none));
    expect(l2.boot).toBeUndefined();
    expect(() => chooseMechanism(undefined)).toThrow(UserError);
  });

  test("a plugin's probe decides first; a probe that passes lets the default rule decide", async () => {
    const { path } = makeDiskImage(tmp.dir, { table: "dos", sizeMiB: 96, bootSizeMiB: 64 }, "probe.img");
    const h = head(path);
    const picked = await locateBootPartition(h, { probes: [{ name: "pass", pick: () => undefined }, { name: "second", pick: (ps) => ps[1].index }] });
    expect(picked.boot?.index).toBe(2);
    expect(picked.bootReason).toBe("picked by probe second");
    const passed = await locateBootPartition(h, { probes: [{ name: "pass", pick: () => undefined }] });
    expect(passed.boot?.index).toBe(1);
  });

  test("no partition table, or a bare FAT file system: UserError before anything else", async () => {
    await expect(locateBootPartition(new Uint8Array(1 << 20))).rejects.toBeInstanceOf(UserError);
    const bare = makeFatPartition(tmp.dir, { sizeMiB: 8, fat: 12, name: "bare.img" });
    await expect(locateBootPartition(readBytes(bare))).rejects.toThrow(/bare FAT/);
  });
});

describe("inspectBootPartition", () => {
  test("Raspberry Pi OS (bookworm/trixie) with cloud-init seed files", async () => {
    const part = makeFatPartition(tmp.dir, {
      sizeMiB: 64,
      files: {
        "cmdline.txt": RPI_CMDLINE,
        "config.txt": RPI_CONFIG_TXT,
        "issue.txt": "Raspberry Pi reference 2025-10-01\n",
        "user-data": "#cloud-config\n",
        "meta-data": "instance_id: rpios-image\n",
        "network-config": "network:\n  version: 2\n",
      },
      name: "rpi.img",
    });
    const i = await inspectBootPartition(readBytes(part));
    expect(i.fatType).toBe("FAT32");
    expect(i.label).toBe("bootfs");
    expect(i.files.map((f) => f.toLowerCase()).sort()).toEqual(["cmdline.txt", "config.txt", "issue.txt", "meta-data", "network-config", "user-data"]);
    expect(i.cmdline).toBe(RPI_CMDLINE);
    expect(i.bootDirOnImage).toBe("/boot/firmware");
    expect(i.bootDirReason).toContain("auto_initramfs");
    expect(i.cloudInit).toEqual({ used: true, evidence: ["user-data on the boot partition", "meta-data on the boot partition"] });
    expect(i.os).toBe("raspberry-pi-os");
    expect(i.networkConfig).toBe("network:\n  version: 2\n");
    expect(chooseMechanism(i)).toEqual({ mechanism: "cloud-init", reason: "image uses cloud-init (user-data on the boot partition, meta-data on the boot partition)" });
    expect(chooseMechanism(i, "firstrun").mechanism).toBe("firstrun");
  });

  test("older Raspberry Pi OS (Pi firmware, config.txt without auto_initramfs) boots from /boot; no seed files means firstrun", async () => {
    const part = makeFatPartition(tmp.dir, {
      sizeMiB: 64,
      files: { "cmdline.txt": RPI_CMDLINE, "config.txt": "dtparam=audio=on\n", "bootcode.bin": "x", "start4.elf": "x" },
      name: "bullseye.img",
    });
    const i = await inspectBootPartition(readBytes(part));
    expect(i.bootDirOnImage).toBe("/boot");
    expect(i.cloudInit.used).toBe(false);
    expect(i.os).toBeUndefined();
    expect(chooseMechanism(i)).toEqual({ mechanism: "firstrun", reason: "no cloud-init seed on the boot partition; cmdline.txt present" });
    expect(chooseMechanism(i, "cloud-init").mechanism).toBe("cloud-init");
    const issue = makeFatPartition(tmp.dir, { sizeMiB: 64, files: { "config.txt": "dtparam=audio=on\n", "issue.txt": "Raspberry Pi reference 2021-05-07\n" }, name: "buster.img" });
    expect((await inspectBootPartition(readBytes(issue))).bootDirOnImage).toBe("/boot");
  });

  test("a Pi-like board without Pi firmware (the test harness's images) uses /boot/firmware", async () => {
    const config = "[all]\nkernel=vmlinuz\ninitramfs initrd.img followkernel\n";
    const part = makeFatPartition(tmp.dir, { sizeMiB: 64, files: { "cmdline.txt": "root=PARTUUID=x rootwait\n", "config.txt": config, vmlinuz: "k", "initrd.img": "i" }, name: "harness.img" });
    const i = await inspectBootPartition(readBytes(part));
    expect(i.bootDirOnImage).toBe("/boot/firmware");
    expect(chooseMechanism(i).mechanism).toBe("firstrun");
  });

  test("a meta-data file alone is cloud-init evidence; no config.txt assumes /boot/firmware", async () => {
    const part = makeFatPartition(tmp.dir, { sizeMiB: 32, fat: 16, files: { "cmdline.txt": "root=/dev/vda2\n", "meta-data": "" }, name: "meta.img" });
    const i = await inspectBootPartition(readBytes(part));
    expect(i.cloudInit.evidence).toEqual(["meta-data on the boot partition"]);
    expect(i.bootDirOnImage).toBe("/boot/firmware");
  });

  test("refusals: firstrun without cmdline.txt, and nothing to customize with", () => {
    const bare: BootInspection = { fatType: "FAT32", files: ["config.txt"], bootDirOnImage: "/boot/firmware", bootDirReason: "", cloudInit: { used: false, evidence: [] } };
    expect(() => chooseMechanism(bare)).toThrow(/neither cloud-init seed files/);
    expect(() => chooseMechanism(bare, "firstrun")).toThrow(/needs a cmdline.txt/);
    expect(chooseMechanism(bare, "cloud-init").mechanism).toBe("cloud-init");
    const e = (() => {
      try {
        chooseMechanism(undefined);
      } catch (err) {
        return err as UserError;
      }
    })();
    expect(e?.message).toContain("no FAT boot partition");
    expect(e?.hint).toContain("without --config");
  });
});
