import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { CONF_KEYS } from "../../../src/config/schema.ts";
import { parseSeedConf } from "../../../src/config/seed-conf.ts";
import { UserError } from "../../../src/errors.ts";

const FIX = join(import.meta.dir, "../../fixtures/customize");

function errorOf(fn: () => unknown): UserError {
  try {
    fn();
  } catch (e) {
    if (e instanceof UserError) return e;
    throw e;
  }
  throw new Error("expected a UserError");
}

describe("parseSeedConf", () => {
  test("the seed README's example parses unchanged, with file:line origins", () => {
    const file = join(FIX, "seed-example.conf");
    const { config, origin } = parseSeedConf(readFileSync(file, "utf8"), file);
    expect(config).toEqual({
      hostname: "myboat",
      user: "mairas",
      password: "secret123",
      sshKeys: ["~/.ssh/id_ed25519.pub", "~/.ssh/id_rsa.pub"],
      wifiSsid: "MyNetwork",
      wifiPassword: "MyPass",
      wifiCountry: "FI",
    });
    expect(origin.hostname).toEqual({ file, line: 2 });
    expect(origin["sshKeys.0"]).toEqual({ file, line: 5 });
    expect(origin["sshKeys.1"]).toEqual({ file, line: 6 });
    expect(origin.wifiCountry).toEqual({ file, line: 9 });
  });

  test("values are everything after the first =, spaces, quotes, $, backticks, \\ and # kept", () => {
    const file = join(FIX, "adversarial.conf");
    const { config } = parseSeedConf(readFileSync(file, "utf8"), file);
    expect(config.password).toBe(`  p@ss w0rd "quoted" 'single' $HOME \`id\` \\n \\\\ # not a comment = still value  `);
    expect(config.wifiSsid).toBe(` Café "Mörkö" $x \`y\` \\z #7 `);
    expect(config.wifiPassword).toBe(`Ünï 'q' "d" $(rm -rf /) \`reboot\` \\ # end! `);
    expect(config.sshPasswordAuth).toBe(true);
    expect(config.keepHostKeys).toBe(false);
    expect(config.timezone).toBe("Europe/Helsinki");
  });

  test("comments, blank lines, CRLF, BOM and spaces around the key", () => {
    const text = "\uFEFF# comment\r\n\r\n   # indented comment\r\n  hostname = spaced \r\nuser=x\r\n";
    const { config, origin } = parseSeedConf(text, "f.conf");
    // The key is trimmed; the value keeps its leading space (the seed's rule), the CR is dropped.
    expect(config).toEqual({ hostname: " spaced ", user: "x" });
    expect(origin.hostname.line).toBe(4);
  });

  test("an empty value means not set", () => {
    expect(parseSeedConf("password=\nhostname=a\n", "f").config).toEqual({ hostname: "a" });
  });

  test("unknown key: file:line and the closest key", () => {
    const e = errorOf(() => parseSeedConf("hostname=a\n\nwifi_sid=net\n", "boat.conf"));
    expect(e.message).toBe('boat.conf:3: unknown key "wifi_sid"');
    expect(e.hint).toContain('Did you mean "wifi-ssid"?');
    const far = errorOf(() => parseSeedConf("colour=blue\n", "boat.conf"));
    expect(far.hint).not.toContain("Did you mean");
    expect(far.hint).toContain("hostname");
    expect(errorOf(() => parseSeedConf("hostnme=a\n", "b")).hint).toContain('"hostname"');
    expect(errorOf(() => parseSeedConf("sshkey=a\n", "b")).hint).toContain('"ssh-key"');
  });

  test("a line without = names the line and the format", () => {
    const e = errorOf(() => parseSeedConf("hostname=a\nuser mairas\n", "b.conf"));
    expect(e.message).toBe('b.conf:2: expected key=value, found "user mairas"');
    expect(e.hint).toContain("key=value");
  });

  test("a scalar key given twice is refused with both lines; ssh-key may repeat", () => {
    const e = errorOf(() => parseSeedConf("hostname=a\nuser=u\nhostname=b\n", "b.conf"));
    expect(e.message).toBe("b.conf:3: hostname is set twice (also at line 1)");
    expect(parseSeedConf("ssh-key=a\nssh-key=b\nssh-key=c\n", "b").config.sshKeys).toEqual(["a", "b", "c"]);
  });

  test("booleans: true/false, yes/no, on/off, 1/0; anything else names the key", () => {
    for (const [word, value] of [["true", true], ["Yes", true], ["on", true], ["1", true], ["false", false], ["no", false], ["OFF", false], ["0", false]] as const) {
      expect(parseSeedConf(`ssh-password-auth=${word}\n`, "f").config.sshPasswordAuth).toBe(value);
    }
    const e = errorOf(() => parseSeedConf("keep-host-keys=maybe\n", "b.conf"));
    expect(e.message).toBe('b.conf:1: keep-host-keys must be true or false, found "maybe"');
  });

  test("every key of CONF_KEYS is accepted", () => {
    const text = [
      "hostname=h",
      "user=u",
      "password-hash=$6$x$y",
      "ssh-key=k",
      "wifi-ssid=s",
      "wifi-password=p",
      "wifi-country=GB",
      "timezone=UTC",
      "keyboard-layout=gb",
      "locale=en_GB.UTF-8",
      "ssh-password-auth=no",
      "keep-host-keys=yes",
    ].join("\n");
    const { config } = parseSeedConf(text, "f");
    expect(Object.keys(config).sort()).toEqual(
      ["hostname", "user", "passwordHash", "sshKeys", "wifiSsid", "wifiPassword", "wifiCountry", "timezone", "keyboardLayout", "locale", "sshPasswordAuth", "keepHostKeys"].sort(),
    );
  });

  test("example.conf parses, and documents every key with a comment above it", () => {
    const file = join(import.meta.dir, "../../../example.conf");
    const text = readFileSync(file, "utf8");
    expect(parseSeedConf(text, file).config.hostname).toBe("myboat");
    const lines = text.split("\n");
    for (const key of Object.keys(CONF_KEYS)) {
      const at = lines.findIndex((l) => l.startsWith(`${key}=`) || l.startsWith(`#${key}=`));
      expect(at).toBeGreaterThan(0);
      // The comment block above the (first) line of this key.
      let i = at - 1;
      while (i >= 0 && /^#?[a-z-]+=/.test(lines[i])) i--;
      expect(lines[i]).toMatch(/^# \S/);
    }
    // With every commented-out key switched on (but password-hash, which excludes password), it still parses.
    const all = lines.map((l) => (/^#[a-z-]+=/.test(l) && !l.startsWith("#password-hash=") && !l.startsWith("#ssh-key=") ? l.slice(1) : l)).join("\n");
    expect(Object.keys(parseSeedConf(all, file).config).length).toBe(Object.keys(CONF_KEYS).length - 1);
  });
});
