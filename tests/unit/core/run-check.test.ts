import { describe, expect, test } from "bun:test";
import { type CheckReport, formatCheck } from "../../../src/core/run-check.ts";

const board: NonNullable<CheckReport["board"]> = {
  hostname: "pi4", user: "pi", sudo: "ok", arch: "aarch64", model: "Raspberry Pi 4 Model B", kernel: "6.12", os: "Debian", init: "systemd",
  root: { device: "/dev/mmcblk0p2", fstype: "ext4", disk: "/dev/mmcblk0", diskSize: 32e9 },
  partitions: [], shmAvail: 40 << 20, memTotal: 1 << 30, tools: ["busybox"], servicesToStop: [],
};
const report = (image: CheckReport["image"]): CheckReport => ({
  schema: 1, ok: false, target: { name: "pi@pi4", kind: "ssh", reachable: true }, refusals: ["the image does not fit in the board's RAM"], notes: [], board, image,
});

describe("formatCheck: the image lines", () => {
  test("refused before the image was read (no sha256): record and customize say not checked, not 'no'", () => {
    const text = formatCheck(report({ path: "/i/os.img.xz", format: "xz", fileSize: 5e8, rawSize: 2e9, fitsDisk: true, record: "not checked: refused before the image was read" }));
    expect(text).toMatch(/^ {2}record +not checked: refused before the image was read$/m);
    expect(text).toMatch(/^ {2}customize +not checked: refused before the image was read$/m);
    expect(text).not.toMatch(/sha256/);
  });

  test("read and not customized: customize no", () => {
    const text = formatCheck(report({ path: "/i/os.img.xz", format: "xz", fileSize: 5e8, rawSize: 2e9, sha256: "ab".repeat(32), fitsDisk: true, record: "flash-live.txt on the new boot partition" }));
    expect(text).toMatch(/^ {2}customize +no$/m);
    expect(text).toMatch(/^ {2}sha256 +abab/m);
  });
});
