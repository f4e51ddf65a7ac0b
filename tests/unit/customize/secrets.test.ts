import { describe, expect, test } from "bun:test";
import { hashPassword, passwordHashKind, randomSalt, wifiPsk } from "../../../src/customize/secrets.ts";
import { run } from "./_images.ts";

/** openssl passwd -6, password on stdin (no argv quoting in the way). */
function openssl(password: string, salt: string): string {
  return run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], { stdin: `${password}\n` }).stdout.trim();
}

/** glibc crypt(3) through perl, values through the environment. */
function glibcCrypt(password: string, setting: string): string {
  const p = Bun.spawnSync(["perl", "-e", "print crypt($ENV{PW}, $ENV{SETTING})"], { env: { PW: password, SETTING: setting }, stdout: "pipe" });
  return p.stdout.toString();
}

function wpaPassphrase(ssid: string, passphrase: string): string {
  const out = run(["wpa_passphrase", ssid, passphrase]).stdout;
  return /^\s*psk=([0-9a-f]{64})$/m.exec(out)![1];
}

const PASSWORDS = [
  "secret123",
  "pässwörd",
  "日本語のパスワード",
  "emoji 🚤⚓ and spaces",
  `quotes ' " $HOME \`id\` \\ # !`,
  "x".repeat(100),
];

describe("hashPassword (SHA-512 crypt)", () => {
  for (const pw of PASSWORDS) {
    test(`equals openssl passwd -6 and glibc crypt: ${JSON.stringify(pw.slice(0, 24))}`, () => {
      const salt = "Zq8.Ab/c9xYw3Lm1";
      const ours = hashPassword(pw, salt);
      expect(ours).toBe(openssl(pw, salt));
      expect(ours).toBe(glibcCrypt(pw, `$6$${salt}$`));
    });
  }

  test("random salt: 16 crypt characters, different every time, verifiable by glibc", () => {
    const a = hashPassword("pässwörd");
    const b = hashPassword("pässwörd");
    expect(a).not.toBe(b);
    expect(a).toMatch(/^\$6\$[./0-9A-Za-z]{16}\$[./0-9A-Za-z]{86}$/);
    expect(glibcCrypt("pässwörd", a)).toBe(a);
    const salts = new Set(Array.from({ length: 200 }, () => randomSalt()));
    expect(salts.size).toBe(200);
  });

  test("passwordHashKind accepts $6$ (with rounds), $5$, $y$ and rejects the rest", () => {
    expect(passwordHashKind(openssl("a", "saltsalt"))).toBe("sha512");
    expect(passwordHashKind(glibcCrypt("a", "$6$rounds=10000$saltsalt$"))).toBe("sha512");
    expect(passwordHashKind(run(["openssl", "passwd", "-5", "-salt", "abc", "-stdin"], { stdin: "a\n" }).stdout.trim())).toBe("sha256");
    expect(passwordHashKind(glibcCrypt("a", "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$"))).toBe("yescrypt");
    for (const bad of ["", "secret", "$1$abc$xyz", "$6$salt$tooshort", `${openssl("a", "s")}\n`, "$6$sa:lt$" + "a".repeat(86)]) {
      expect(passwordHashKind(bad)).toBeUndefined();
    }
  });
});

describe("wifiPsk (PBKDF2-SHA1, 4096 rounds, 32 bytes)", () => {
  test("IEEE 802.11i test vectors", () => {
    expect(wifiPsk("password", "IEEE")).toBe("f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e");
    expect(wifiPsk("ThisIsAPassword", "ThisIsASSID")).toBe("0dc0d6eb90555ed6419756b9a15ec3e3209b63df707dd508d14581f8982721af");
  });

  const CASES: [string, string][] = [
    ["MyNetwork", "MyPass12"],
    [" Café \"Mörkö\" $x `y` \\z #7 ", "Ünï 'q' \"d\" $(rm -rf /) `reboot` \\ # end! "],
    ["x".repeat(32), "a".repeat(63)],
    ["日本", "パスワードです"],
  ];
  for (const [ssid, pass] of CASES) {
    test(`equals wpa_passphrase: ${JSON.stringify(ssid.slice(0, 16))}`, () => {
      expect(wifiPsk(pass, ssid)).toBe(wpaPassphrase(ssid, pass));
    });
  }
});
