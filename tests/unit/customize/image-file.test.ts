import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { customizeImageFile } from "../../../src/customize/image-file.ts";
import { applyPatch } from "../../../src/customize/patch.ts";
import { UserError } from "../../../src/errors.ts";
import { fsckClean, makeDiskImage, mdir, mtype, readBytes, RPI_CMDLINE, RPI_CONFIG_TXT, run, tempDir } from "./_images.ts";

const tmp = tempDir();
afterAll(tmp.cleanup);
const CLI = join(import.meta.dir, "../../../src/cli.ts");
let IMG: string;
let BOOT_OFFSET: number;
let KEY: string;

beforeAll(() => {
  const made = makeDiskImage(tmp.dir, {
    table: "dos",
    sizeMiB: 96,
    bootSizeMiB: 64,
    files: { "cmdline.txt": RPI_CMDLINE, "config.txt": RPI_CONFIG_TXT, "kernel8.img": new Uint8Array(1 << 20).fill(7) },
  });
  IMG = made.path;
  BOOT_OFFSET = made.bootOffset;
  // Some data in the root partition, so the copy has more than the boot partition to carry.
  run(["dd", "if=/dev/urandom", `of=${IMG}`, "bs=1M", "seek=80", "count=3", "conv=notrunc", "status=none"]);
  run(["sh", "-c", 'gzip -1 -k -c "$1" >"$1.gz" && xz -0 -T1 -k -c "$1" >"$1.xz" && zstd -q -1 -c "$1" >"$1.zst"', "sh", IMG]);
  run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "me", "-f", join(tmp.dir, "id")]);
  KEY = readFileSync(join(tmp.dir, "id.pub"), "utf8").trim();
});

const CONFIG = () => ({ hostname: "myboat", user: "skipper", password: "secret123", sshKeys: [KEY], wifiSsid: "Net", wifiPassword: "12345678", timezone: "UTC" });

function partitionOf(image: string, name: string): string {
  const out = join(tmp.dir, name);
  run(["dd", `if=${image}`, `of=${out}`, "bs=1M", `skip=${BOOT_OFFSET >> 20}`, "count=64", "status=none"]);
  return out;
}

describe("customizeImageFile", () => {
  for (const ext of ["", ".gz", ".xz", ".zst"]) {
    test(`input ${ext || "raw"}: the output is the image plus exactly the patch`, async () => {
      const out = join(tmp.dir, `out${ext.replace(".", "-")}.img`);
      const r = await customizeImageFile({ image: IMG + ext, out, config: CONFIG(), home: tmp.dir });
      expect(r.inputFormat).toBe(({ "": "raw", ".gz": "gzip", ".xz": "xz", ".zst": "zstd" } as const)[ext]!);
      expect(r.outputFormat).toBe("raw");
      expect(r.choice.mechanism).toBe("firstrun");
      expect(r.summary).toMatch(/^hostname myboat, user skipper \(password, 1 key\), ssh password auth on, Wi-Fi "Net" \(GB\), timezone UTC; via firstrun\.sh on partition 1 \([\d.]+ KiB in \d+ extents\)$/);
      expect(r.imageBytes).toBe(96 << 20);
      const expected = readBytes(IMG);
      applyPatch(expected, r.patch);
      expect(Buffer.compare(readBytes(out), expected)).toBe(0);
      // Written sparse: the unused space takes no blocks.
      expect(statSync(out).blocks * 512).toBeLessThan(40 << 20);
      const part = partitionOf(out, `p-${ext || "raw"}.img`);
      expect(fsckClean(part).ok).toBe(true);
      expect(mdir(part)).toContain("::/firstrun.sh");
      expect(mtype(part, "cmdline.txt")).toContain(" systemd.run=/boot/firmware/firstrun.sh ");
    }, 60_000);
  }

  test("compressed output (.gz, .zst) decompresses to the customized image; cloud-init forced", async () => {
    for (const [ext, cmd] of [[".gz", "gzip"], [".zst", "zstd"]] as const) {
      const out = join(tmp.dir, `out.img${ext}`);
      const r = await customizeImageFile({ image: `${IMG}.xz`, out, config: CONFIG(), home: tmp.dir, customizeWith: "cloud-init" });
      expect(r.outputFormat).toBe(ext === ".gz" ? "gzip" : "zstd");
      expect(r.choice.mechanism).toBe("cloud-init");
      const raw = join(tmp.dir, `dec${ext}.img`);
      run(["sh", "-c", `${cmd} -dc "$1" >"$2"`, "sh", out, raw]);
      const expected = readBytes(IMG);
      applyPatch(expected, r.patch);
      expect(Buffer.compare(readBytes(raw), expected)).toBe(0);
      const part = partitionOf(raw, `pc${ext}.img`);
      expect(parse(mtype(part, "user-data")).hostname).toBe("myboat");
      expect(mtype(part, "cmdline.txt")).toBe(`${RPI_CMDLINE.trimEnd()} cfg80211.ieee80211_regdom=GB\n`);
    }
  }, 60_000);

  test("refusals before any output: nothing to do, .xz output, same file, keep-host-keys without a board", async () => {
    await expect(customizeImageFile({ image: IMG, out: join(tmp.dir, "x.img"), config: {}, home: tmp.dir })).rejects.toBeInstanceOf(UserError);
    await expect(customizeImageFile({ image: IMG, out: join(tmp.dir, "x.img.xz"), config: CONFIG(), home: tmp.dir })).rejects.toThrow(/writes raw images, .gz and .zst/);
    await expect(customizeImageFile({ image: IMG, out: IMG, config: CONFIG(), home: tmp.dir })).rejects.toThrow(/overwrite the image/);
    await expect(customizeImageFile({ image: IMG, out: join(tmp.dir, "x.img"), config: { ...CONFIG(), keepHostKeys: true }, home: tmp.dir })).rejects.toThrow(/keep-host-keys/);
  }, 60_000);

  test("flash-live customize IMAGE --config FILE -o OUT", () => {
    const conf = join(tmp.dir, "boat.conf");
    writeFileSync(conf, `hostname=cliboat\nuser=skipper\npassword=secret 123\nssh-key=${join(tmp.dir, "id.pub")}\n`);
    const out = join(tmp.dir, "cli.img");
    const r = run([process.execPath, CLI, "customize", `${IMG}.zst`, "--config", conf, "-o", out], { ok: false });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("customized: hostname cliboat, user skipper (password, 1 key), ssh password auth on; via firstrun.sh on partition 1 (");
    expect(r.stdout).not.toContain("secret 123");
    expect(mtype(partitionOf(out, "cli-p.img"), "firstrun.sh")).toContain("FL_HOSTNAME=cliboat\n");

    const bad = join(tmp.dir, "bad.conf");
    writeFileSync(bad, "hostname=cliboat\nhostnme=x\n");
    const e = run([process.execPath, CLI, "customize", IMG, "--config", bad, "-o", out], { ok: false });
    expect(e.code).not.toBe(0);
    expect(e.stderr + e.stdout).toContain(`${bad}:2: unknown key "hostnme"`);
  }, 60_000);
});
