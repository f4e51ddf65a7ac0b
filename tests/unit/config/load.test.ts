import { describe, expect, test } from "bun:test";
import { join, resolve } from "node:path";
import { UserError } from "../../../src/errors.ts";
import { FLASH_LIVE_DEFAULTS, formatSources, loadFlashConfig, toConfOrigins } from "../../../src/config/load.ts";
import { resolveCustomization } from "../../../src/customize/resolve.ts";
import { readFileSync } from "node:fs";

const ROOT = resolve(import.meta.dir, "../../..");
const FIX = join(ROOT, "tests/fixtures/config");

const load = (dir: string, more: Partial<Parameters<typeof loadFlashConfig>[0]> = {}) =>
  loadFlashConfig({ cwd: join(FIX, dir), env: {}, flags: {}, ...more });

describe("file layer discovery (fixture folders)", () => {
  test("no config file: defaults only, every value from `default`", async () => {
    const r = await load("empty");
    expect(r.config).toEqual({ ...FLASH_LIVE_DEFAULTS });
    expect(r.files).toEqual([]);
    expect(Object.values(r.sources).every((s) => s?.layer === "default")).toBe(true);
  });

  test("flash-live.config.ts through c12, importing flash-live/config; plugin paths anchored at the file", async () => {
    const r = await load("ts-config");
    const file = join(FIX, "ts-config/flash-live.config.ts");
    expect(r.config.hostname).toBe("ts-boat");
    expect(r.config.services).toEqual(["myapp-*"]);
    expect(r.config.plugins).toEqual([join(FIX, "ts-config/plugins/local.ts"), "!halos"]);
    expect(r.sources.user).toEqual({ layer: "file", file, line: 8 });
    // The value comes from a variable on line 4; the key is on line 7.
    expect(r.sources.hostname?.line).toBe(7);
    expect(r.sources.mode).toEqual({ layer: "default" });
  });

  test("YAML: lists, kebab-case spellings, booleans, enum", async () => {
    const r = await load("yaml-config");
    expect(r.config).toMatchObject({
      hostname: "yaml-boat",
      sshKeys: ["~/.ssh/id_ed25519.pub", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample yaml@test"],
      wifiSsid: "Harbour",
      wifiPassword: "sea level, 8+",
      mode: "ramfs",
      verify: false,
    });
    expect(r.sources.wifiSsid?.line).toBe(6);
    expect(r.sources.sshKeys?.line).toBe(3);
  });

  test("JSON", async () => {
    const r = await load("json-config");
    expect(r.config).toMatchObject({ hostname: "json-boat", services: ["a.service", "b-*"], keepHostKeys: true });
    expect(r.sources.keepHostKeys).toMatchObject({ layer: "file", line: 4 });
  });

  test(".flashliverc alone (rc9 format, key[]= lists)", async () => {
    const r = await load("rc-only");
    expect(r.config).toMatchObject({ hostname: "rc-boat", sshKeys: ["~/.ssh/a.pub", "~/.ssh/b.pub"], yes: true });
    expect(r.sources.sshKeys).toEqual({ layer: "file", file: join(FIX, "rc-only/.flashliverc"), line: 3 });
  });

  test(".flashliverc values are text typed by their key (no number/boolean guessing), JSON quotes removed", async () => {
    const r = await load("rc-types");
    expect(r.config).toMatchObject({ wifiSsid: "1234", wifiPassword: "00123456", hostname: "quoted-boat", verify: false });
    expect(r.sources.wifiPassword?.line).toBe(3);
  });

  test(".flashliverc: a plain key given twice is refused (rc9 would keep only the last ssh key)", async () => {
    await expect(load("rc-repeated")).rejects.toThrow(/\.flashliverc:2: `ssh-key` is given twice/);
  });

  test("flash-live.config.* is above .flashliverc; both are read", async () => {
    const r = await load("rc-and-json");
    expect(r.config.hostname).toBe("from-json");
    expect(r.config.user).toBe("rc-user");
    expect(r.files).toEqual([join(FIX, "rc-and-json/.flashliverc"), join(FIX, "rc-and-json/flash-live.config.json")]);
    expect(r.sources.user?.file).toBe(join(FIX, "rc-and-json/.flashliverc"));
  });

  test("--config replaces discovery; relative to cwd; `+` list appends to the defaults", async () => {
    const r = await load("explicit", { configFile: "other.yaml" });
    expect(r.config.hostname).toBe("explicit-yaml");
    expect(r.files).toEqual([join(FIX, "explicit/other.yaml")]);
    expect(r.config.services).toEqual(["appended-to-defaults"]);
  });

  test("--config with the seed's .conf file", async () => {
    const r = await load("empty", { configFile: join(FIX, "seed/myboat.conf") });
    expect(r.config).toMatchObject({
      hostname: "myboat",
      user: "mairas",
      password: "secret123",
      sshKeys: ["~/.ssh/id_ed25519.pub", "~/.ssh/id_rsa.pub"],
      wifiSsid: "MyNetwork",
      wifiPassword: "MyPass",
      wifiCountry: "FI",
    });
    expect(r.sources.wifiCountry).toEqual({ layer: "file", file: join(FIX, "seed/myboat.conf"), line: 9 });
    expect(r.sources.sshKeys?.line).toBe(5);
  });

  test("--config with a key=value file without extension is read as the seed format", async () => {
    const r = await load("empty", { configFile: join(FIX, "seed/boat-settings") });
    expect(r.config.hostname).toBe("noext-boat");
    expect(r.config.sshKeys).toEqual(["~/.ssh/id_ed25519.pub"]);
  });

  test("errors the user can fix: missing file, unknown key, bad value, mixed list", async () => {
    await expect(load("empty", { configFile: "nope.conf" })).rejects.toThrow(/Config file not found/);
    await expect(load("bad-key")).rejects.toThrow(/unknown config key `hostnme`/);
    await expect(load("bad-type")).rejects.toThrow(/`mode` must be one of auto, ramfs, stream/);
    const e = await load("mixed-list").catch((x) => x);
    expect(e).toBeInstanceOf(UserError);
    expect(e.message).toMatch(/mixes appended \(\+item\) and plain items/);
  });
});

describe("precedence default < file < env < flag", () => {
  test("each layer overrides the one below, and sources say which", async () => {
    const r = await load("json-config", {
      env: { FLASH_LIVE_HOSTNAME: "env-boat", FLASH_LIVE_USER: "env-user", FLASH_LIVE_MODE: "stream" },
      flags: { hostname: "flag-boat", _: ["host"], local: true },
    });
    expect(r.config.hostname).toBe("flag-boat");
    expect(r.config.user).toBe("env-user");
    expect(r.config.mode).toBe("stream");
    expect(r.config.keepHostKeys).toBe(true);
    expect(r.config.verify).toBe(true);
    expect(r.sources.hostname).toEqual({ layer: "flag", name: "--hostname" });
    expect(r.sources.user).toEqual({ layer: "env", name: "FLASH_LIVE_USER" });
    expect(r.sources.keepHostKeys?.layer).toBe("file");
    expect(r.sources.verify).toEqual({ layer: "default" });
  });

  test("flags given in kebab-case map to keys; false flags override true file values", async () => {
    const r = await load("json-config", { flags: { "keep-host-keys": false, "wifi-country": "FI" } });
    expect(r.config.keepHostKeys).toBe(false);
    expect(r.config.wifiCountry).toBe("FI");
    expect(r.sources.keepHostKeys).toEqual({ layer: "flag", name: "--keep-host-keys" });
  });
});

describe("list merge rule: replace, unless every item has a leading +", () => {
  test("plain list in a higher layer replaces", async () => {
    const r = await load("json-config", { env: { FLASH_LIVE_SERVICES: "c.service" } });
    expect(r.config.services).toEqual(["c.service"]);
  });

  test("+ list appends (duplicates skipped) and the source chain names both layers", async () => {
    const r = await load("json-config", { env: { FLASH_LIVE_SERVICES: "+c.service,+b-*" }, flags: { services: "+d" } });
    expect(r.config.services).toEqual(["a.service", "b-*", "c.service", "d"]);
    expect(r.sources.services).toMatchObject({
      layer: "flag",
      appendedTo: { layer: "env", name: "FLASH_LIVE_SERVICES", appendedTo: { layer: "file", line: 3 } },
    });
  });

  test("an empty list clears; mixing forms is refused", async () => {
    const r = await load("json-config", { flags: { services: [] } });
    expect(r.config.services).toEqual([]);
    await expect(load("json-config", { flags: { services: ["+a", "b"] } })).rejects.toThrow(/mixes appended/);
  });

  test("sshKeys from the seed file are replaced by env unless appended", async () => {
    const configFile = join(FIX, "seed/myboat.conf");
    const replaced = await load("empty", { configFile, env: { FLASH_LIVE_SSH_KEYS: "~/.ssh/other.pub" } });
    expect(replaced.config.sshKeys).toEqual(["~/.ssh/other.pub"]);
    const appended = await load("empty", { configFile, env: { FLASH_LIVE_SSH_KEYS: "+~/.ssh/other.pub" } });
    expect(appended.config.sshKeys).toEqual(["~/.ssh/id_ed25519.pub", "~/.ssh/id_rsa.pub", "~/.ssh/other.pub"]);
  });
});

describe("environment parsing", () => {
  test("lists: comma-separated, or newline-separated when the value has newlines (keeps commas in key comments)", async () => {
    const commas = await load("empty", { env: { FLASH_LIVE_SSH_KEYS: " ~/.ssh/a.pub , ~/.ssh/b.pub ,," } });
    expect(commas.config.sshKeys).toEqual(["~/.ssh/a.pub", "~/.ssh/b.pub"]);
    const lines = "ssh-ed25519 AAAA1 me@a, laptop\nssh-rsa AAAA2 me@b\n";
    const nl = await load("empty", { env: { FLASH_LIVE_SSH_KEYS: lines } });
    expect(nl.config.sshKeys).toEqual(["ssh-ed25519 AAAA1 me@a, laptop", "ssh-rsa AAAA2 me@b"]);
  });

  test("booleans, secrets, multi-word names; empty counts as unset", async () => {
    const r = await load("json-config", {
      env: {
        FLASH_LIVE_VERIFY: "no",
        FLASH_LIVE_ACCEPT_NEW_HOST_KEY: "1",
        FLASH_LIVE_WIFI_PASSWORD: "p@ss, word",
        FLASH_LIVE_PASSWORD_HASH: "$6$salt$hash",
        FLASH_LIVE_HOSTNAME: "",
      },
    });
    expect(r.config).toMatchObject({ verify: false, acceptNewHostKey: true, wifiPassword: "p@ss, word", passwordHash: "$6$salt$hash", hostname: "json-boat" });
  });

  test("bad values name the variable; unknown FLASH_LIVE_* is a warning, reserved ones are quiet", async () => {
    await expect(load("empty", { env: { FLASH_LIVE_VERIFY: "maybe" } })).rejects.toThrow(/FLASH_LIVE_VERIFY: `verify` must be true or false/);
    const r = await load("empty", { env: { FLASH_LIVE_HOSTNAM: "typo", FLASH_LIVE_HARNESS: "1", OTHER: "x" } });
    expect(r.warnings).toEqual(["Ignoring unknown environment variable FLASH_LIVE_HOSTNAM."]);
    expect(r.config.hostname).toBeUndefined();
  });

  test("plugin paths from env are relative to cwd", async () => {
    const r = await load("empty", { env: { FLASH_LIVE_PLUGINS: "./p.ts,!halos" } });
    expect(r.config.plugins).toEqual([join(FIX, "empty/p.ts"), "!halos"]);
  });
});

describe("secrets are not accepted from flags", () => {
  for (const flag of ["password", "wifiPassword", "wifi-password", "password-hash"]) {
    test(flag, async () => {
      const e = await load("empty", { flags: { [flag]: "hunter2" } }).catch((x) => x);
      expect(e).toBeInstanceOf(UserError);
      expect(e.exitCode).toBe(2);
      expect(e.message).toMatch(/is not accepted on the command line/);
      expect(e.hint).toMatch(/FLASH_LIVE_/);
    });
  }
});

describe("formatSources", () => {
  test("masks secrets, names layer and file:line", async () => {
    const r = await load("empty", {
      configFile: join(FIX, "seed/myboat.conf"),
      env: { FLASH_LIVE_SERVICES: "+x" },
      flags: { hostname: "flag-boat" },
    });
    const out = formatSources(r);
    expect(out).not.toContain("secret123");
    expect(out).not.toContain("MyPass");
    expect(out).toMatch(/^password +\*{8} +.*myboat\.conf:4$/m);
    expect(out).toMatch(/^hostname +flag-boat +flag --hostname$/m);
    expect(out).toMatch(/^wifiCountry +FI +.*myboat\.conf:9$/m);
    expect(out).toMatch(/^services +x +env FLASH_LIVE_SERVICES \(\+ default\)$/m);
    expect(out).toMatch(/^verify +true +default$/m);
    expect(out.split("\n")[0]).toMatch(/^key +value +from$/);
  });
});

describe("toConfOrigins (for resolveCustomization)", () => {
  test("file values keep file:line, per ssh-key line; env/flag/default values are left out", async () => {
    const file = join(FIX, "seed/myboat.conf");
    const r = await load("empty", { configFile: file, env: { FLASH_LIVE_SSH_KEYS: "+~/.ssh/extra.pub", FLASH_LIVE_USER: "envuser" } });
    expect(r.itemSources.sshKeys?.map((s) => s.line ?? s.name)).toEqual([5, 6, "FLASH_LIVE_SSH_KEYS"]);
    const o = toConfOrigins(r);
    expect(o.hostname).toEqual({ file, line: 2 });
    expect(o["sshKeys.0"]).toEqual({ file, line: 5 });
    expect(o["sshKeys.1"]).toEqual({ file, line: 6 });
    expect(o["sshKeys.2"]).toBeUndefined();
    expect(o.user).toBeUndefined();
    expect(o.verify).toBeUndefined();
  });

  test("a relative ssh-key path in a .conf given from another directory is read relative to the .conf", async () => {
    const r = await load("empty", { configFile: "../seed-relative/boat.conf" });
    const resolved = resolveCustomization(r.config, { home: join(FIX, "empty"), cwd: join(FIX, "empty"), origin: toConfOrigins(r) });
    expect(resolved?.user?.sshKeys).toEqual([readFileSync(join(FIX, "seed-relative/keys/test.pub"), "utf8").trim()]);
    // Without the origins the same path would be looked up in cwd, and fail there.
    expect(() => resolveCustomization(r.config, { home: join(FIX, "empty"), cwd: join(FIX, "empty") })).toThrow();
  });
});
