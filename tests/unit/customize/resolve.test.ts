import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseSeedConf } from "../../../src/config/seed-conf.ts";
import type { CustomizationConfig } from "../../../src/config/schema.ts";
import { publicKeyProblem, resolveCustomization, type ResolveOptions } from "../../../src/customize/resolve.ts";
import { wifiPsk } from "../../../src/customize/secrets.ts";
import { UserError } from "../../../src/errors.ts";
import { run, tempDir } from "./_images.ts";

const FIX = join(import.meta.dir, "../../fixtures/customize");
const tmp = tempDir();
const home = join(tmp.dir, "home");
let ED: string;
let RSA: string;

beforeAll(() => {
  mkdirSync(join(home, ".ssh"), { recursive: true });
  run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "me@laptop", "-f", join(home, ".ssh/id_ed25519")]);
  run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-C", "me@rsa", "-f", join(home, ".ssh/id_rsa")]);
  ED = readFileSync(join(home, ".ssh/id_ed25519.pub"), "utf8").trim();
  RSA = readFileSync(join(home, ".ssh/id_rsa.pub"), "utf8").trim();
});
afterAll(tmp.cleanup);

const opts = (extra: Partial<ResolveOptions> = {}): ResolveOptions => ({ home, cwd: tmp.dir, ...extra });

function errorOf(fn: () => unknown): UserError {
  try {
    fn();
  } catch (e) {
    if (e instanceof UserError) return e;
    throw e;
  }
  throw new Error("expected a UserError");
}

/** Resolve a .conf text written to a file, so messages carry file:line. */
function resolveConf(text: string, extra: Partial<ResolveOptions> = {}) {
  const file = join(tmp.dir, "boat.conf");
  writeFileSync(file, text);
  const { config, origin } = parseSeedConf(text, file);
  return resolveCustomization(config, opts({ origin, ...extra }));
}

function glibcCrypt(password: string, setting: string): string {
  return Bun.spawnSync(["perl", "-e", "print crypt($ENV{PW}, $ENV{SETTING})"], { env: { PW: password, SETTING: setting }, stdout: "pipe" }).stdout.toString();
}

describe("resolveCustomization", () => {
  test("the seed README's example: keys from ~/, password hashed, PSK derived, country kept", () => {
    const file = join(FIX, "seed-example.conf");
    const { config, origin } = parseSeedConf(readFileSync(file, "utf8"), file);
    // The example's Wi-Fi password is 6 characters: too short for WPA, and said so.
    expect(() => resolveCustomization(config, opts({ origin }))).toThrow(/wifi-password: is 6 bytes long/);
    const r = resolveCustomization({ ...config, wifiPassword: "MyPass123" }, opts({ origin }))!;
    expect(r.hostname).toBe("myboat");
    expect(r.user!.name).toBe("mairas");
    expect(glibcCrypt("secret123", r.user!.passwordHash!)).toBe(r.user!.passwordHash!);
    expect(r.user!.sshKeys).toEqual([ED, RSA]);
    expect(r.wifi).toEqual({ ssid: "MyNetwork", psk: wifiPsk("MyPass123", "MyNetwork") });
    expect(r.wifiCountry).toBe("FI");
    expect(r.sshPasswordAuth).toBe(true);
    expect(r.keepHostKeys).toBe(false);
    expect(JSON.stringify(r)).not.toContain("secret123");
    expect(JSON.stringify(r)).not.toContain("MyPass123");
  });

  test("adversarial values arrive exactly as written", () => {
    const file = join(FIX, "adversarial.conf");
    const { config, origin } = parseSeedConf(readFileSync(file, "utf8"), file);
    const r = resolveCustomization(config, opts({ origin, salt: "saltsalt" }))!;
    expect(r.user!.passwordHash).toBe(glibcCrypt(`  p@ss w0rd "quoted" 'single' $HOME \`id\` \\n \\\\ # not a comment = still value  `, "$6$saltsalt$"));
    expect(r.wifi!.ssid).toBe(` Café "Mörkö" $x \`y\` \\z #7 `);
    expect(r.wifi!.psk).toBe(wifiPsk(`Ünï 'q' "d" $(rm -rf /) \`reboot\` \\ # end! `, r.wifi!.ssid));
    expect(r.wifiCountry).toBe("FI");
    expect(r.timezone).toBe("Europe/Helsinki");
  });

  test("nothing to customize: undefined (a whole FlashLiveConfig with defaults counts as nothing)", () => {
    expect(resolveCustomization({}, opts())).toBeUndefined();
    const defaults = { mode: "auto", customizeWith: "auto", verify: true, keepHostKeys: false, services: [], plugins: [], sshKeys: [] } as CustomizationConfig;
    expect(resolveCustomization(defaults, opts())).toBeUndefined();
    expect(resolveCustomization({ keepHostKeys: true }, opts())?.keepHostKeys).toBe(true);
    expect(resolveCustomization({ wifiCountry: "de" }, opts())?.wifiCountry).toBe("DE");
  });

  describe("messages name the file, the line, the key and the fix", () => {
    const cases: [string, string, RegExp, RegExp][] = [
      ["hostname=my_boat\n", ":1: hostname:", /not a valid host name/, /RFC 1123/],
      ["hostname=-boat\n", ":1: hostname:", /not a valid host name/, /hyphen/],
      [`hostname=${"a".repeat(64)}\n`, ":1: hostname:", /not a valid host name/, /1-63/],
      ["# c\nuser=Mairas\npassword=x\n", ":2: user:", /not a valid user name/, /lowercase/],
      ["user=root\npassword=x\n", ":1: user:", /system account/, /UID 1000/],
      ["password=x\n", ":1: password:", /needs user/, /user=NAME/],
      ["password-hash=$6$a$b\n", ":1: password-hash:", /needs user/, /user=NAME/],
      ["hostname=a\nssh-key=~/.ssh/id_ed25519.pub\n", ":2: ssh-key:", /needs user/, /user=NAME/],
      ["user=u\nssh-key=~/.ssh/nope.pub\n", ":2: ssh-key:", /cannot read .*nope\.pub \(ENOENT\)/, /relative to the config file/],
      ["user=u\nssh-key=~/.ssh/id_ed25519\n", ":2: ssh-key:", /not an SSH public key: this is a private key/, /\.pub/],
      ["user=u\nssh-key=ssh-ed25519 AAAAnotakey\n", ":2: ssh-key:", /key given inline is not valid/, /whole line/],
      ["user=u\npassword=a\npassword-hash=$6$x$y\n", ":3: password-hash:", /both set/, /Keep one/],
      ["user=u\npassword-hash=secret\n", ":2: password-hash:", /not a crypt\(3\) hash/, /openssl passwd -6/],
      ["wifi-ssid=net\n", ":1: wifi-ssid:", /needs wifi-password/, /8-63/],
      ["wifi-password=12345678\n", ":1: wifi-password:", /needs wifi-ssid/, /network name/],
      ["wifi-ssid=net\nwifi-password=short\n", ":2: wifi-password:", /is 5 bytes long; WPA passphrases have 8-63/, /64-hex-digit PSK/],
      [`wifi-ssid=net\nwifi-password=${"z".repeat(64)}\n`, ":2: wifi-password:", /64 bytes long/, /passphrase/],
      [`wifi-ssid=${"x".repeat(33)}\nwifi-password=12345678\n`, ":1: wifi-ssid:", /33 bytes long; an SSID has at most 32/, /network name/],
      ["wifi-country=XX\n", ":1: wifi-country:", /not an ISO 3166 country code/, /wifi-country=FI/],
      ["wifi-country=Finland\n", ":1: wifi-country:", /not an ISO 3166/, /2-letter/],
      ["timezone=Europe/Helsinky\n", ":1: timezone:", /not a known time zone/, /Area\/City/],
      ["timezone=../../etc/passwd\n", ":1: timezone:", /not a known time zone/, /Area\/City/],
      ["keyboard-layout=GB\n", ":1: keyboard-layout:", /not an XKB layout name/, /us, gb/],
      ["locale=english\n", ":1: locale:", /not a locale name/, /en_GB\.UTF-8/],
    ];
    for (const [text, where, message, hint] of cases) {
      test(JSON.stringify(text), () => {
        const e = errorOf(() => resolveConf(text));
        expect(e.message).toContain(`boat.conf${where}`);
        expect(e.message).toMatch(message);
        expect(e.hint ?? "").toMatch(hint);
      });
    }

    test("a user with no way to log in", () => {
      const e = errorOf(() => resolveConf("user=u\n", { home: join(tmp.dir, "nokeys") }));
      expect(e.message).toContain("boat.conf:1: user: u would have no way to log in");
      expect(e.hint).toContain("ssh-key=");
    });

    test("without an origin the key is still named", () => {
      expect(errorOf(() => resolveCustomization({ hostname: "a b" }, opts())).message).toBe('hostname: "a b" is not a valid host name');
    });
  });

  test("a newline in an SSID or passphrase is an error, not an injection", () => {
    expect(errorOf(() => resolveCustomization({ wifiSsid: "a\nb", wifiPassword: "12345678" }, opts())).message).toContain("wifi-ssid: contains a line break");
    expect(errorOf(() => resolveCustomization({ wifiSsid: "ab", wifiPassword: "1234\n5678" }, opts())).message).toContain("wifi-password: contains a line break");
  });

  test("63-character passphrase, 64-hex PSK given directly, 32-byte unicode SSID", () => {
    const ssid = "ö".repeat(16);
    const r = resolveCustomization({ wifiSsid: ssid, wifiPassword: "p".repeat(63) }, opts())!;
    expect(r.wifi!.psk).toBe(wifiPsk("p".repeat(63), ssid));
    const hex = "ABCDEF0123456789".repeat(4);
    expect(resolveCustomization({ wifiSsid: "n", wifiPassword: hex }, opts())!.wifi!.psk).toBe(hex.toLowerCase());
    expect(resolveCustomization({ wifiSsid: "n", wifiPassword: hex }, opts())!.wifiCountry).toBe("GB");
  });

  test("ssh keys: ~/ expansion, relative to the config file, literal lines, multi-key files, default ~/.ssh/*.pub", () => {
    mkdirSync(join(tmp.dir, "keys"), { recursive: true });
    writeFileSync(join(tmp.dir, "keys/team.pub"), `# team\n${ED}\n\n${RSA}\n`);
    const r = resolveConf(`user=u\nssh-key=keys/team.pub\nssh-key=${ED}\nssh-key=~/.ssh/id_rsa.pub\n`)!;
    expect(r.user!.sshKeys).toEqual([ED, RSA, ED, RSA]);
    // Keys given: ~/.ssh/*.pub is not added; none given: it is, certificates and junk skipped with a warning.
    writeFileSync(join(home, ".ssh/id_ed25519-cert.pub"), "ssh-ed25519-cert-v01@openssh.com AAAA x\n");
    writeFileSync(join(home, ".ssh/junk.pub"), "not a key\n");
    const d = resolveCustomization({ user: "u" }, opts())!;
    expect(d.user!.sshKeys).toEqual([ED, RSA]);
    expect(d.warnings).toEqual([`skipped ${join(home, ".ssh/junk.pub")}: unknown key type \"not\"`]);
    expect(d.sshPasswordAuth).toBe(false);
  });

  test("ssh-password-auth: off with keys only, on with a password, explicit value wins", () => {
    expect(resolveCustomization({ user: "u", sshKeys: [ED] }, opts())!.sshPasswordAuth).toBe(false);
    expect(resolveCustomization({ user: "u", sshKeys: [ED], password: "pw" }, opts())!.sshPasswordAuth).toBe(true);
    expect(resolveCustomization({ user: "u", password: "pw" }, opts({ home: join(tmp.dir, "nokeys") }))!.sshPasswordAuth).toBe(true);
    expect(resolveCustomization({ user: "u", sshKeys: [ED], sshPasswordAuth: true }, opts())!.sshPasswordAuth).toBe(true);
    expect(resolveCustomization({ user: "u", sshKeys: [ED], password: "pw", sshPasswordAuth: false }, opts())!.sshPasswordAuth).toBe(false);
    expect(resolveCustomization({ hostname: "h" }, opts())!.sshPasswordAuth).toBeUndefined();
    expect(resolveCustomization({ sshPasswordAuth: false }, opts())!.sshPasswordAuth).toBe(false);
  });

  test("password-hash is taken as is; $y$ and $5$ accepted", () => {
    const y = "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$1S9vs83NA8xEf9w4vZ4mM3VAC770cVTPDZcj4CWyLU9";
    expect(resolveCustomization({ user: "u", passwordHash: y }, opts())!.user!.passwordHash).toBe(y);
    const five = run(["openssl", "passwd", "-5", "-salt", "abc", "-stdin"], { stdin: "a\n" }).stdout.trim();
    expect(resolveCustomization({ user: "u", passwordHash: five }, opts())!.user!.passwordHash).toBe(five);
  });

  test("time zones: against a zoneinfo directory when there is one, else by form", () => {
    const zi = join(tmp.dir, "zoneinfo");
    mkdirSync(join(zi, "Europe"), { recursive: true });
    writeFileSync(join(zi, "Europe/Helsinki"), "TZif");
    expect(resolveCustomization({ timezone: "Europe/Helsinki" }, opts({ zoneinfoDir: zi }))!.timezone).toBe("Europe/Helsinki");
    expect(() => resolveCustomization({ timezone: "Europe/Oslo" }, opts({ zoneinfoDir: zi }))).toThrow(UserError);
    expect(() => resolveCustomization({ timezone: "Europe" }, opts({ zoneinfoDir: zi }))).toThrow(UserError); // a directory
    expect(resolveCustomization({ timezone: "Europe/Oslo" }, opts({ zoneinfoDir: null }))!.timezone).toBe("Europe/Oslo");
    expect(resolveCustomization({ timezone: "UTC" }, opts({ zoneinfoDir: null }))!.timezone).toBe("UTC");
    expect(() => resolveCustomization({ timezone: "Nowhere" }, opts({ zoneinfoDir: null }))).toThrow(UserError);
  });

  test("publicKeyProblem checks the blob's own type name", () => {
    expect(publicKeyProblem(ED)).toBeUndefined();
    expect(publicKeyProblem(RSA.replace(/^ssh-rsa/, "ssh-ed25519"))).toBe("the key data does not match its type");
    expect(publicKeyProblem("ssh-ed25519")).toBe("not of the form `type base64 comment`");
  });
});
