import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import type { BootFile } from "../../../src/core/hooks.ts";
import { IMAGER_GROUPS } from "../../../src/customize/cloud-init.ts";
import { buildFirstrunScript, firstrunRunArgs, localeGenLine, nmConnection } from "../../../src/customize/firstrun.ts";
import { hostKeysFromFiles, type HostKey } from "../../../src/customize/host-keys.ts";
import type { BootInspection } from "../../../src/customize/inspect.ts";
import { buildPayloads } from "../../../src/customize/payloads.ts";
import { resolveCustomization, type ResolvedCustomization } from "../../../src/customize/resolve.ts";
import { wifiPsk } from "../../../src/customize/secrets.ts";
import { UserError } from "../../../src/errors.ts";
import { cloudInitSchema } from "./_cloud-init.ts";
import { run, tempDir } from "./_images.ts";

const tmp = tempDir();
afterAll(tmp.cleanup);

// Values chosen to break naive quoting in YAML or shell.
const NASTY_SSID = ` Café "Mörkö" $x \`y\` \\z #7 '`;
const NASTY_PASS = `Ünï 'q' "d" $(rm -rf /) \`reboot\` \\ # end! `;
const NASTY_COMMENT = `me 'x' "y" $HOME \`id\` \\ # ünï: - [a] {b}`;
let KEY1: string;
let KEY2: string;
let HOST_KEYS: HostKey[];

beforeAll(() => {
  const key = (t: string, f: string) => {
    run(["ssh-keygen", "-q", "-t", t, "-N", "", "-C", "x", "-f", join(tmp.dir, f)]);
    return readFileSync(join(tmp.dir, `${f}.pub`), "utf8").trim();
  };
  KEY1 = key("ed25519", "k1").replace(/ x$/, ` ${NASTY_COMMENT}`);
  KEY2 = key("rsa", "k2");
  const files: Record<string, string> = {};
  for (const t of ["ed25519", "ecdsa", "rsa"]) {
    run(["ssh-keygen", "-q", "-t", t, "-N", "", "-C", "root@oldboard", "-f", join(tmp.dir, `ssh_host_${t}_key`)]);
    files[`/etc/ssh/ssh_host_${t}_key`] = readFileSync(join(tmp.dir, `ssh_host_${t}_key`), "utf8");
    files[`/etc/ssh/ssh_host_${t}_key.pub`] = readFileSync(join(tmp.dir, `ssh_host_${t}_key.pub`), "utf8");
  }
  HOST_KEYS = hostKeysFromFiles(files);
});

const INSPECTION: BootInspection = {
  fatType: "FAT32",
  label: "bootfs",
  files: ["cmdline.txt", "config.txt"],
  cmdline: "console=tty1 root=PARTUUID=4e639091-02 rootwait\n",
  bootDirOnImage: "/boot/firmware",
  bootDirReason: "config.txt has auto_initramfs=1",
  cloudInit: { used: false, evidence: [] },
};

function typical(extra: Record<string, unknown> = {}): ResolvedCustomization {
  return resolveCustomization(
    {
      hostname: "myboat",
      user: "skipper",
      password: "pässwörd 'quoted' $x",
      sshKeys: [KEY1, KEY2],
      wifiSsid: NASTY_SSID,
      wifiPassword: NASTY_PASS,
      wifiCountry: "fi",
      timezone: "Europe/Helsinki",
      keyboardLayout: "fi",
      locale: "fi_FI.UTF-8",
      ...extra,
    },
    { home: tmp.dir, salt: "saltsalt" },
  )!;
}

function file(files: BootFile[], path: string): string {
  const f = files.find((x) => x.path === path);
  if (!f) throw new Error(`no ${path} in ${files.map((x) => x.path).join(", ")}`);
  return typeof f.data === "string" ? f.data : new TextDecoder().decode(f.data);
}

function checkSchema(name: string, text: string): void {
  const p = join(tmp.dir, name);
  writeFileSync(p, text);
  const r = cloudInitSchema()(p);
  expect(r.output).toContain("Valid cloud-config");
  expect(r.ok).toBe(true);
}

describe("cloud-init payloads", () => {
  test("user-data: Imager's shape, every value round-trips through YAML, valid for cloud-init's schema", () => {
    const r = typical();
    const { files, cmdlineAppend } = buildPayloads(r, { mechanism: "cloud-init", inspection: INSPECTION });
    expect(files.map((f) => f.path)).toEqual(["user-data", "network-config", "meta-data"]);
    expect(cmdlineAppend).toBe("cfg80211.ieee80211_regdom=FI");
    const text = file(files, "user-data");
    expect(text.startsWith("#cloud-config\n")).toBe(true);
    const doc = parse(text);
    expect(doc.hostname).toBe("myboat");
    expect(doc.manage_etc_hosts).toBe(true);
    expect(doc.users).toEqual([
      { name: "skipper", groups: IMAGER_GROUPS, shell: "/bin/bash", lock_passwd: false, hashed_passwd: r.user!.passwordHash, ssh_authorized_keys: [KEY1, KEY2] },
    ]);
    expect(doc.ssh_pwauth).toBe(true);
    expect(doc.timezone).toBe("Europe/Helsinki");
    expect(doc.keyboard).toEqual({ model: "pc105", layout: "fi" });
    expect(doc.locale).toBe("fi_FI.UTF-8");
    expect(doc.ssh_keys).toBeUndefined();
    // The rename of the image's first user: the name is an argument, not part of the script. Then
    // the boot partition becomes root-only (private-boot.test.ts); set -e reports either failing.
    const [setE, cmd, privateBoot] = doc.bootcmd;
    expect(setE).toBe("set -e");
    expect(cmd.slice(0, 5)).toEqual(["cloud-init-per", "once", "flash-live-take-over-user", "sh", "-c"]);
    expect(cmd.slice(6)).toEqual(["sh", "skipper"]);
    expect(cmd[5]).not.toContain("skipper");
    run(["sh", "-n", "-c", cmd[5]]);
    expect(privateBoot.slice(0, 5)).toEqual(["cloud-init-per", "once", "flash-live-private-boot", "sh", "-c"]);
    expect(doc.bootcmd).toHaveLength(3);
    expect(text).not.toContain("pässwörd");
    checkSchema("user-data", text);
  }, 60_000);

  test("keys only: locked password, sudo without one, password auth off", () => {
    const r = typical({ password: undefined });
    const doc = parse(file(buildPayloads(r, { mechanism: "cloud-init", inspection: INSPECTION }).files, "user-data"));
    expect(doc.users[0].lock_passwd).toBe(true);
    expect(doc.users[0].passwd).toBeUndefined();
    expect(doc.users[0].hashed_passwd).toBeUndefined();
    expect(doc.users[0].sudo).toBe("ALL=(ALL) NOPASSWD:ALL");
    expect(doc.ssh_pwauth).toBe(false);
  });

  test("network-config: v2 Wi-Fi with the PSK (never the passphrase), the SSID exact, Ethernet kept reachable", () => {
    const r = typical();
    const text = file(buildPayloads(r, { mechanism: "cloud-init", inspection: INSPECTION }).files, "network-config");
    expect(text).not.toContain("Ünï");
    const net = parse(text).network;
    expect(net.version).toBe(2);
    expect(Object.keys(net.wifis.wlan0["access-points"])).toEqual([NASTY_SSID]);
    expect(net.wifis.wlan0["access-points"][NASTY_SSID]).toEqual({ password: wifiPsk(NASTY_PASS, NASTY_SSID) });
    expect(net.wifis.wlan0["regulatory-domain"]).toBe("FI");
    expect(net.ethernets).toEqual({ eth: { match: { name: "e*" }, dhcp4: true, dhcp6: true, optional: true } });
    expect(net.renderer).toBeUndefined();
  });

  test("network-config: the image's own settings are kept (wrapped or not); Raspberry Pi OS gets NetworkManager", () => {
    const r = typical();
    const own = "# image default\nversion: 2\nethernets:\n  eth0:\n    dhcp4: true\n    addresses: [10.0.0.2/24]\n";
    const a = parse(file(buildPayloads(r, { mechanism: "cloud-init", inspection: { ...INSPECTION, networkConfig: own } }).files, "network-config")).network;
    expect(a.ethernets).toEqual({ eth0: { dhcp4: true, addresses: ["10.0.0.2/24"] } });
    const wrapped = "network:\n  version: 2\n  renderer: networkd\n  ethernets: {end0: {dhcp4: true}}\n";
    const b = parse(file(buildPayloads(r, { mechanism: "cloud-init", inspection: { ...INSPECTION, networkConfig: wrapped } }).files, "network-config")).network;
    expect(b.renderer).toBe("networkd");
    expect(b.ethernets).toEqual({ end0: { dhcp4: true } });
    const commentsOnly = "# network:\n#   version: 2\n";
    const c = parse(file(buildPayloads(r, { mechanism: "cloud-init", inspection: { ...INSPECTION, networkConfig: commentsOnly, os: "raspberry-pi-os" } }).files, "network-config")).network;
    expect(c.renderer).toBe("NetworkManager");
    expect(c.ethernets.eth.match.name).toBe("e*");
  });

  test("meta-data only when the image has none; no network-config without Wi-Fi", () => {
    const r = typical({ wifiSsid: undefined, wifiPassword: undefined, wifiCountry: undefined });
    const withMeta = buildPayloads(r, { mechanism: "cloud-init", inspection: { ...INSPECTION, files: ["cmdline.txt", "META-DATA"] } });
    expect(withMeta.files.map((f) => f.path)).toEqual(["user-data"]);
    expect(withMeta.cmdlineAppend).toBeUndefined();
    const meta = parse(file(buildPayloads(r, { mechanism: "cloud-init", inspection: INSPECTION }).files, "meta-data"));
    expect(meta["instance-id"]).toMatch(/^flash-live-[0-9a-f]{16}$/);
    expect(meta["local-hostname"]).toBe("myboat");
  });

  test("keep-host-keys: the board's keys in ssh_keys; refused without keys", () => {
    const r = typical({ keepHostKeys: true });
    const doc = parse(file(buildPayloads(r, { mechanism: "cloud-init", inspection: INSPECTION, hostKeys: HOST_KEYS }).files, "user-data"));
    expect(Object.keys(doc.ssh_keys).sort()).toEqual(["ecdsa_private", "ecdsa_public", "ed25519_private", "ed25519_public", "rsa_private", "rsa_public"]);
    const ed = HOST_KEYS.find((k) => k.type === "ed25519")!;
    expect(doc.ssh_keys.ed25519_private).toBe(ed.privateKey);
    expect(doc.ssh_keys.ed25519_public).toBe(ed.publicKey);
    expect(doc.ssh_deletekeys).toBe(true);
    expect(() => buildPayloads(r, { mechanism: "cloud-init", inspection: INSPECTION })).toThrow(UserError);
  });
});

describe("firstrun.sh", () => {
  test("appends Imager's systemd.run arguments after the regulatory domain; refuses a second systemd.run", () => {
    const p = buildPayloads(typical(), { mechanism: "firstrun", inspection: INSPECTION });
    expect(p.files.map((f) => f.path)).toEqual(["firstrun.sh"]);
    expect(p.cmdlineAppend).toBe(`cfg80211.ieee80211_regdom=FI${firstrunRunArgs("/boot/firmware")}`);
    expect(p.cmdlineAppend).toBe("cfg80211.ieee80211_regdom=FI systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target");
    const old = buildPayloads(typical(), { mechanism: "firstrun", inspection: { ...INSPECTION, bootDirOnImage: "/boot" } });
    expect(old.cmdlineAppend).toContain("systemd.run=/boot/firstrun.sh ");
    expect(() => buildPayloads(typical(), { mechanism: "firstrun", inspection: { ...INSPECTION, cmdline: "root=x systemd.run=/boot/x.sh" } })).toThrow(/already starts a first-boot script/);
    expect(() => buildPayloads(typical(), { mechanism: "firstrun", inspection: { ...INSPECTION, cmdline: undefined } })).toThrow(UserError);
  });

  const variants: [string, () => ResolvedCustomization, HostKey[] | undefined][] = [
    ["typical", () => typical(), undefined],
    ["keys only, host keys", () => typical({ password: undefined, keepHostKeys: true }), undefined],
    ["hostname only", () => resolveCustomization({ hostname: "h" }, { home: tmp.dir })!, undefined],
  ];
  for (const [name, make] of variants) {
    test(`${name}: parses under sh, dash and bash; shellcheck clean`, () => {
      const r = make();
      const script = buildFirstrunScript(r, "/boot/firmware", r.keepHostKeys ? HOST_KEYS : []);
      const path = join(tmp.dir, `firstrun-${name.replace(/\W+/g, "-")}.sh`);
      writeFileSync(path, script);
      for (const sh of ["sh", "dash", "bash"]) run([sh, "-n", path]);
      const sc = run(["shellcheck", "-s", "sh", "-f", "gcc", path], { ok: false });
      expect(sc.stdout).toBe("");
      expect(sc.code).toBe(0);
    });
  }

  test("every value comes back byte for byte when the header is run by sh, dash and bash", () => {
    const r = typical({ keepHostKeys: true });
    const script = buildFirstrunScript(r, "/boot/firmware", HOST_KEYS);
    const header = script.slice(0, script.indexOf("fl_host_keys_data() {"));
    expect(header).not.toContain("pässwörd");
    expect(header).not.toContain("Ünï");
    const names = ["FL_BOOT_DIR", "FL_RUN_ARGS", "FL_HOSTNAME", "FL_USER", "FL_PASSWORD_HASH", "FL_AUTHORIZED_KEYS", "FL_SSH_PASSWORD_AUTH", "FL_WPA_SUPPLICANT_CONF", "FL_TIMEZONE", "FL_LOCALE"];
    const probe = `${header}\nprintf '%s\\0' ${names.map((n) => `"$${n}"`).join(" ")}\n`;
    const path = join(tmp.dir, "probe.sh");
    writeFileSync(path, probe);
    for (const sh of ["sh", "dash", "bash"]) {
      const out = Bun.spawnSync([sh, path], { stdout: "pipe" }).stdout.toString().split("\0").slice(0, -1);
      expect(out).toEqual([
        "/boot/firmware",
        firstrunRunArgs("/boot/firmware"),
        "myboat",
        "skipper",
        r.user!.passwordHash!,
        `${KEY1}\n${KEY2}`,
        "yes",
        out[7],
        "Europe/Helsinki",
        "fi_FI.UTF-8",
      ]);
      expect(out[7]).toContain(`ssid=${Buffer.from(NASTY_SSID).toString("hex")}\n`);
      expect(out[7]).toContain(`psk=${wifiPsk(NASTY_PASS, NASTY_SSID)}\n`);
      expect(out[7]).toContain("country=FI\n");
    }
    // Host keys are arguments of fl_host_key calls: run them with a recording fl_host_key.
    const keysProbe = `${script.slice(script.indexOf("fl_host_keys_data() {"), script.indexOf("\n}\n", script.indexOf("fl_host_keys_data() {")) + 3)}\nfl_host_key() { printf '%s\\0' "$1" "$2" "$3"; }\nfl_host_keys_data\n`;
    writeFileSync(path, keysProbe);
    const got = Bun.spawnSync(["dash", path], { stdout: "pipe" }).stdout.toString().split("\0").slice(0, -1);
    expect(got).toEqual(HOST_KEYS.flatMap((k) => [k.type, k.privateKey.replace(/\n+$/, ""), k.publicKey]));
  });

  test("NetworkManager keyfile: plain SSIDs as text, anything else as bytes; locale.gen lines", () => {
    expect(nmConnection({ ssid: "My Net_1", psk: "ab" })).toContain("\nssid=My Net_1\n");
    expect(nmConnection({ ssid: "a;b", psk: "ab" })).toContain("\nssid=97;59;98;\n");
    expect(nmConnection({ ssid: "123", psk: "ab" })).toContain("\nssid=49;50;51;\n");
    expect(nmConnection({ ssid: "Kö", psk: "ab" })).toContain("\nssid=75;195;182;\n");
    expect(nmConnection({ ssid: "n", psk: "ab" })).toContain("\npsk=ab\n");
    expect(localeGenLine("en_GB.UTF-8")).toBe("en_GB.UTF-8 UTF-8");
    expect(localeGenLine("de_DE.utf8")).toBe("de_DE.utf8 UTF-8");
    expect(localeGenLine("C.UTF-8")).toBe("");
    expect(localeGenLine("fi_FI")).toBe("");
  });
});
