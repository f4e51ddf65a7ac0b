/**
 * Proves the board harness itself (tests/harness): images laid out like a Pi's, boards restored
 * from snapshots, a flash done BY HAND exactly as in FIELD-NOTES §2, the disk compared byte for
 * byte, and the Pi-like reboot into the NEW image's kernel command line.
 * One QEMU at a time (2 cores): every test stops its board in afterEach.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { shellQuote } from "../../src/util/shell.ts";
import { run } from "../harness/_run.ts";
import { type Board, startBoard } from "../harness/board.ts";
import { ensureImage } from "../harness/build-image.ts";
import { ensureForm, PACKED, withForms } from "../harness/compress.ts";
import { parsePartitionTable, readRaw } from "../harness/disk.ts";
import { parseConfigTxt } from "../harness/firmware.ts";
import { BOARD_MARKER_PATH, BOARD_MARKER_TEXT } from "../harness/recipes.ts";
import { NOT_A_BOARD_EXIT } from "../harness/ssh.ts";

let board: Board | undefined;
afterEach(async () => {
  await board?.stop();
  board = undefined;
});

// Generous: on a cold cache a test first builds the images (minutes) and boots its snapshot.
const COLD_BUILD_MS = 1_800_000;
const report = (msg: string) => process.stderr.write(`[harness.test] ${msg}\n`);

/**
 * FIELD-NOTES §2, by hand: busybox to /dev/shm and the rest run under it; udev stopped and journald
 * off /var (systemd boards); boot partition read-only; root frozen (FIFREEZE) so no writer can touch
 * the old root; partitions set read-only (ext4 skips its error-superblock write); stream-decompress
 * onto the whole disk with fsync; flush the disk; reset at once with sysrq-b (no sync after).
 */
const HAND_FLASH = [
  "set -e",
  "BB=/dev/shm/flash/busybox",
  'DISK="$1"',
  'DEV="${DISK##*/}"',
  "if command -v systemctl >/dev/null 2>&1; then",
  "  systemctl stop systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket || true",
  "  journalctl --relinquish-var || true",
  "fi",
  "sync",
  "mount -o remount,ro /boot/firmware",
  "$BB fsfreeze --freeze /",
  'for p in /sys/class/block/"$DEV"/"$DEV"*; do $BB blockdev --setro "/dev/${p##*/}"; done',
  // gzip, not xz as in the notes: the codec proves nothing here, and busybox decodes gzip
  // 1.5 times faster on a TCG board (this case alone: write and reboot 69.4 s with xz, 45.8 s).
  '$BB zcat | $BB dd of="$DISK" bs=1M conv=fsync',
  '$BB blockdev --flushbufs "$DISK"',
  "echo b > /proc/sysrq-trigger",
].join("\n");

describe("board images", () => {
  test("L and L-gpt: partition tables read like sfdisk reads them; bootfs has the Pi boot files", async () => {
    for (const name of ["L", "L-gpt"] as const) {
      const img = await ensureImage(name);
      const sfdisk = JSON.parse((await run(["sfdisk", "-J", img.raw])).stdout).partitiontable as { label: string; partitions: { start: number; size: number }[] };
      expect(sfdisk.label).toBe(img.table);
      const parsed = parsePartitionTable(readRaw(img.raw, 0, 64 * 1024));
      expect(parsed.map((p) => [p.start, p.size])).toEqual(sfdisk.partitions.map((p) => [p.start * 512, p.size * 512]));
      const boot = parsed[0]!;
      const dir = (await run(["mdir", "-b", "-i", `${img.raw}@@${boot.start}`, "::/"])).stdout;
      for (const f of ["VMLINUZ", "INITRD.IMG", "CMDLINE.TXT", "CONFIG.TXT"]) expect(dir.toUpperCase()).toContain(`::/${f}`);
      const label = (await run(["mlabel", "-s", "-i", `${img.raw}@@${boot.start}`, "::"])).stdout;
      expect(label).toContain("bootfs");
      const cmdline = (await run(["mtype", "-i", `${img.raw}@@${boot.start}`, "::/cmdline.txt"])).stdout.trim();
      expect(cmdline).toBe(img.cmdline);
      expect(cmdline).toContain(`root=PARTUUID=${img.partuuid.root}`);
      const config = parseConfigTxt((await run(["mtype", "-i", `${img.raw}@@${boot.start}`, "::/config.txt"])).stdout);
      expect(config).toEqual({ kernel: "vmlinuz", initramfs: "initrd.img", cmdline: "cmdline.txt" });
      report(`${name}: raw ${img.sizes.raw} (${img.buildSeconds ? `built in ${img.buildSeconds} s` : "cached"})`);
    }
  }, COLD_BUILD_MS);

  test("compressed forms: made on first use, once for two callers at once; each decompresses to the raw image", async () => {
    const dir = mkdtempSync(join(tmpdir(), "flash-live-forms-"));
    try {
      const raw = join(dir, "x.img");
      // 6 MiB: text-like bytes and a zero MiB, so every codec has work and the output is small.
      const bytes = Buffer.alloc(6 << 20);
      for (let i = 0; i < 5 << 20; i++) bytes[i] = 97 + ((i * 7 + (i >> 12)) % 23);
      writeFileSync(raw, bytes);
      const img = { raw, sizes: { raw: bytes.length } };
      const [a, b] = await Promise.all([withForms(img, PACKED), withForms(img, ["xz", "xz"] as const)]);
      expect(b.xz).toBe(a.xz);
      const decode = { xz: ["xz", "-dc"], gz: ["gzip", "-dc"], zst: ["zstd", "-qdc"] } as const;
      for (const f of PACKED) {
        expect(a[f]).toBe(`${raw}.${f}`);
        expect(a.sizes[f]).toBe(statSync(a[f]).size);
        const out = Bun.spawnSync([...decode[f], a[f]]);
        expect(out.exitCode).toBe(0);
        expect(Buffer.compare(out.stdout, bytes)).toBe(0);
      }
      // Made once: the second caller found the file (no leftover temporary files either).
      expect(readdirSync(dir).filter((n) => n.includes(".tmp-"))).toEqual([]);
      const mtime = statSync(a.xz).mtimeMs;
      await ensureForm(raw, "xz");
      expect(statSync(a.xz).mtimeMs).toBe(mtime);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("boards", () => {
  test("L board from snapshot, flashed BY HAND with L2 (FIELD-NOTES §2): disk == L2.img byte for byte, boots L2's cmdline, new boot_id", async () => {
    const l2 = await ensureImage("L2", "gz");
    board = await startBoard({ image: "L", disk: "virtio", holdAtReboot: true });
    report(`L restore: ${JSON.stringify(board.timings)}`);
    expect((await board.ssh("cat /etc/image-id")).stdout.trim()).toBe("L");
    const oldBootId = await board.bootId();
    // The harness refuses to run anything where the board marker is missing...
    await board.ssh(`mv ${BOARD_MARKER_PATH} /root/marker`, { user: "root" });
    const refused = await board.ssh("echo ran", { user: "root", check: false });
    expect(refused.code).toBe(NOT_A_BOARD_EXIT);
    expect(refused.stdout).not.toContain("ran");
    // ...and scp (which runs no command) puts it back.
    const markerFile = join(board.runDir, "marker");
    writeFileSync(markerFile, BOARD_MARKER_TEXT);
    await board.scp(markerFile, BOARD_MARKER_PATH, { user: "root" });
    expect((await board.ssh(`cat ${BOARD_MARKER_PATH}`)).stdout).toBe(BOARD_MARKER_TEXT);

    const t0 = performance.now();
    const flash = await board.ssh(
      `mkdir -p /dev/shm/flash && cp /usr/bin/busybox /dev/shm/flash/busybox && exec /dev/shm/flash/busybox sh -c ${shellQuote(HAND_FLASH)} flash /dev/vda`,
      { user: "root", stdin: { file: l2.gz! }, check: false, timeoutMs: 600_000 },
    );
    await board.waitHeld(120_000);
    const flashSeconds = (performance.now() - t0) / 1000;
    // sysrq-b drops the session: ssh ends with 255 (connection closed), never with a script error.
    expect([0, 255]).toContain(flash.code);

    const cmp = await board.compareDisk(l2.raw);
    expect(cmp).toMatchObject({ equal: true, differingSectors: 0, firstDifferences: [] });
    const tc = performance.now();
    // A one-byte patch on the expected side must show up as exactly one differing sector.
    const probe = await board.compareDisk(l2.raw, { patches: [{ offset: 1_000_000, data: new Uint8Array([(await board.readDisk(1_000_000, 1))[0]! ^ 0xff]) }] });
    expect(probe).toMatchObject({ equal: false, differingSectors: 1, firstDifferences: [1_000_000] });
    const compareSeconds = (performance.now() - tc) / 1000;

    await board.resume();
    const newBootId = await board.waitForReboot(oldBootId, 180_000);
    const total = (performance.now() - t0) / 1000;
    expect(newBootId).not.toBe(oldBootId);
    expect((await board.ssh("cat /etc/image-id")).stdout.trim()).toBe("L2");
    expect((await board.ssh("cat /proc/cmdline")).stdout.trim()).toBe(l2.cmdline);
    expect(board.serialLog()).toContain(`cmdline: ${l2.cmdline}`);
    report(`hand flash L -> L2: write+reboot ${flashSeconds.toFixed(1)} s, compare ${compareSeconds.toFixed(1)} s, boot to SSH ${board.timings.bootToSshSeconds} s, whole cycle ${total.toFixed(1)} s`);
  }, COLD_BUILD_MS);

  test("a guest reboot boots the board again from its disk; a kernel panic fails the board fast", async () => {
    board = await startBoard({ image: "L" });
    const first = await board.bootId();
    await board.ssh("reboot", { user: "root", check: false });
    const second = await board.waitForReboot(first, 180_000);
    expect(second).not.toBe(first);
    expect(board.boots.map((b) => b.kind)).toEqual(["restore", "cold"]);
    report(`L reboot: boot to SSH ${board.timings.bootToSshSeconds} s`);

    const t0 = performance.now();
    await board.ssh("echo c > /proc/sysrq-trigger", { user: "root", check: false, timeoutMs: 30_000 });
    await expect(board.waitForSsh(120_000)).rejects.toThrow(/kernel panic/);
    expect(board.state).toBe("failed");
    expect((performance.now() - t0) / 1000).toBeLessThan(30);
  }, COLD_BUILD_MS);

  test("A board (systemd) from snapshot: SSH, marker, passwordless sudo for pi; strict's sudo needs a password", async () => {
    board = await startBoard({ image: "A" });
    report(`A: ${JSON.stringify(board.timings)}`);
    expect((await board.ssh("cat /etc/image-id")).stdout.trim()).toBe("A");
    expect((await board.ssh("sudo -n id -u")).stdout.trim()).toBe("0");
    expect((await board.ssh("systemctl is-system-running || true")).stdout.trim()).toMatch(/^(running|degraded)$/);
    const strict = await board.ssh("sudo -n true", { user: "strict", check: false });
    expect(strict.code).not.toBe(0);
    expect(strict.stderr).toContain("password");
    expect((await board.ssh("findmnt -n -o SOURCE,FSTYPE /boot/firmware")).stdout.trim()).toBe("/dev/vda1 vfat");
    const hostKeys = await board.knownHostsLine();
    expect(hostKeys).toContain(`[127.0.0.1]:${board.sshPort} ssh-ed25519 `);
    expect(readFileSync(board.keyPath, "utf8")).toContain("OPENSSH PRIVATE KEY");
  }, COLD_BUILD_MS);
});
