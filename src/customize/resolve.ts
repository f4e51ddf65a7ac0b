import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, isAbsolute, join, resolve as resolvePath } from "node:path";
import { confKeyOf, formatOrigin, type ConfOrigins } from "../config/seed-conf.ts";
import { CONF_KEYS, type CustomizationConfig } from "../config/schema.ts";
import { UserError } from "../errors.ts";
import { hashPassword, passwordHashKind, wifiPsk } from "./secrets.ts";

/** Everything the payload builders need, validated, with secrets already hashed. */
export interface ResolvedCustomization {
  hostname?: string;
  /** The account that takes over the image's UID 1000 user (or is created with sudo). */
  user?: {
    name: string;
    /** crypt(3) hash for /etc/shadow; absent = leave the password as the image has it. */
    passwordHash?: string;
    /** authorized_keys lines, in config order. */
    sshKeys: string[];
  };
  /** sshd PasswordAuthentication; absent = leave the image's setting. */
  sshPasswordAuth?: boolean;
  /** PSK only: the passphrase never leaves the sending side. */
  wifi?: { ssid: string; psk: string };
  /** ISO 3166 alpha-2 regulatory domain (uppercase); default GB when Wi-Fi is configured. */
  wifiCountry?: string;
  timezone?: string;
  keyboardLayout?: string;
  locale?: string;
  /** Carry the board's SSH host keys into the new image (the caller supplies them). */
  keepHostKeys: boolean;
  /** Non-fatal findings, e.g. a skipped ~/.ssh/*.pub that is not a public key. */
  warnings: string[];
}

export interface ResolveOptions {
  /** For `~/` and the default `~/.ssh/*.pub`. */
  home: string;
  origin?: ConfOrigins;
  /** Base for relative key paths when no config file is known (default: process.cwd()). */
  cwd?: string;
  readFile?: (path: string) => string;
  readDir?: (path: string) => string[];
  /** Where to check time zone names; null = only check the name's form (default /usr/share/zoneinfo when present). */
  zoneinfoDir?: string | null;
  /** Salt for the password hash (tests); random by default. */
  salt?: string;
}

/**
 * Validate a customization config and turn it into what the image needs. Returns undefined when
 * nothing is to be customized. Every error names the key, where it was set (file:line when known)
 * and what to do.
 */
export function resolveCustomization(cfg: CustomizationConfig, opts: ResolveOptions): ResolvedCustomization | undefined {
  const origin = opts.origin ?? {};
  const readFile = opts.readFile ?? ((p: string) => readFileSync(p, "utf8"));
  const readDir = opts.readDir ?? ((p: string) => readdirSync(p));
  const fail = (field: keyof CustomizationConfig, message: string, hint: string, originKey: string = field): never => {
    throw new UserError(`${formatOrigin(origin[originKey])}${confKeyOf(field)}: ${message}`, hint);
  };
  const isSet = (v: unknown) => v !== undefined && v !== "" && !(Array.isArray(v) && v.length === 0);
  // Only customization keys count (cfg may be a whole FlashLiveConfig); keep-host-keys=false is a default.
  const fields = Object.values(CONF_KEYS) as (keyof CustomizationConfig)[];
  if (!fields.some((f) => (f === "keepHostKeys" ? cfg.keepHostKeys === true : isSet(cfg[f])))) return undefined;

  const out: ResolvedCustomization = { keepHostKeys: cfg.keepHostKeys === true, warnings: [] };

  if (isSet(cfg.hostname)) {
    const h = cfg.hostname!;
    if (!/^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(h)) {
      fail(
        "hostname",
        `${JSON.stringify(h)} is not a valid host name`,
        "Use 1-63 letters, digits and hyphens, not starting or ending with a hyphen (RFC 1123), e.g. hostname=myboat.",
      );
    }
    out.hostname = h;
  }

  // --- user, password, keys ---
  if (isSet(cfg.password) && isSet(cfg.passwordHash)) {
    fail("passwordHash", "password and password-hash are both set", "Keep one of them: password-hash if you want no plaintext in the file.");
  }
  if (!isSet(cfg.user)) {
    if (isSet(cfg.password)) fail("password", "needs user", "Add user=NAME: the password is set for that account.");
    if (isSet(cfg.passwordHash)) fail("passwordHash", "needs user", "Add user=NAME: the password is set for that account.");
    if (isSet(cfg.sshKeys)) fail("sshKeys", "needs user", "Add user=NAME: the keys are installed for that account.", "sshKeys.0");
  } else {
    const name = cfg.user!;
    checkUserName(name, (m, h) => fail("user", m, h));
    let passwordHash: string | undefined;
    if (isSet(cfg.password)) {
      if (/[\n\0]/.test(cfg.password!)) fail("password", "contains a newline", "A password is one line; everything after the first = is the password.");
      passwordHash = hashPassword(cfg.password!, opts.salt);
    } else if (isSet(cfg.passwordHash)) {
      if (!passwordHashKind(cfg.passwordHash!)) {
        fail(
          "passwordHash",
          "is not a crypt(3) hash of a known form",
          "Give a $6$ (openssl passwd -6), $5$ or $y$ (mkpasswd -m yescrypt) hash, the whole string.",
        );
      }
      passwordHash = cfg.passwordHash;
    }
    const sshKeys: string[] = [];
    if (isSet(cfg.sshKeys)) {
      cfg.sshKeys!.forEach((entry, i) => {
        const okey = `sshKeys.${i}`;
        sshKeys.push(...loadKeyEntry(entry, origin[okey]?.file, opts, readFile, (m, h) => fail("sshKeys", m, h, okey)));
      });
    } else {
      sshKeys.push(...defaultKeys(opts.home, readFile, readDir, out.warnings));
    }
    if (sshKeys.length === 0 && !passwordHash) {
      fail(
        "user",
        `${name} would have no way to log in: no password and no SSH key (none in ${join(opts.home, ".ssh")}/*.pub)`,
        "Add password=, password-hash= or ssh-key=.",
      );
    }
    out.user = { name, passwordHash, sshKeys };
    out.sshPasswordAuth = cfg.sshPasswordAuth ?? !(sshKeys.length > 0 && !passwordHash);
  }
  if (!out.user && cfg.sshPasswordAuth !== undefined) out.sshPasswordAuth = cfg.sshPasswordAuth;

  // --- Wi-Fi ---
  const hasSsid = isSet(cfg.wifiSsid);
  const hasPass = isSet(cfg.wifiPassword);
  if (hasSsid !== hasPass) {
    if (hasSsid) fail("wifiSsid", "needs wifi-password", "Add wifi-password= (8-63 characters, or the 64-hex-digit PSK).");
    fail("wifiPassword", "needs wifi-ssid", "Add wifi-ssid= with the network name.");
  }
  if (hasSsid) {
    const ssid = cfg.wifiSsid!;
    if (/[\n\r\0]/.test(ssid)) fail("wifiSsid", "contains a line break", "An SSID is one line: everything after the first = is the network name.");
    const ssidBytes = Buffer.byteLength(ssid, "utf8");
    if (ssidBytes > 32) fail("wifiSsid", `is ${ssidBytes} bytes long; an SSID has at most 32`, "Check the network name.");
    const pass = cfg.wifiPassword!;
    let psk: string;
    if (/^[0-9a-fA-F]{64}$/.test(pass)) psk = pass.toLowerCase();
    else {
      if (/[\n\r\0]/.test(pass)) fail("wifiPassword", "contains a line break", "A passphrase is one line: everything after the first = is the passphrase.");
      const n = Buffer.byteLength(pass, "utf8");
      if (n < 8 || n > 63) {
        fail("wifiPassword", `is ${n} bytes long; WPA passphrases have 8-63`, "Check the passphrase (or give the 64-hex-digit PSK).");
      }
      psk = wifiPsk(pass, ssid);
    }
    out.wifi = { ssid, psk };
  }
  if (isSet(cfg.wifiCountry) || out.wifi) {
    const c = (cfg.wifiCountry ?? "GB").toUpperCase();
    if (!/^[A-Z]{2}$/.test(c) || !isKnownRegion(c)) {
      fail("wifiCountry", `${JSON.stringify(cfg.wifiCountry)} is not an ISO 3166 country code`, "Use the 2-letter code of the country the board is in, e.g. wifi-country=FI.");
    }
    out.wifiCountry = c;
  }

  // --- locale settings ---
  if (isSet(cfg.timezone)) {
    const tz = cfg.timezone!;
    if (!isTimezone(tz, opts.zoneinfoDir === undefined ? "/usr/share/zoneinfo" : opts.zoneinfoDir)) {
      fail("timezone", `${JSON.stringify(tz)} is not a known time zone`, "Use an Area/City name from the tz database, e.g. timezone=Europe/Helsinki (or UTC).");
    }
    out.timezone = tz;
  }
  if (isSet(cfg.keyboardLayout)) {
    const k = cfg.keyboardLayout!;
    if (!/^[a-z][a-z0-9_]{0,31}(,[a-z][a-z0-9_]{0,31})*$/.test(k)) {
      fail("keyboardLayout", `${JSON.stringify(k)} is not an XKB layout name`, "Use an XKB layout code such as us, gb, de, fi (several: us,ru).");
    }
    out.keyboardLayout = k;
  }
  if (isSet(cfg.locale)) {
    const l = cfg.locale!;
    if (!/^([a-z]{2,3}(_[A-Z]{2})?(\.[A-Za-z0-9-]+)?(@[a-z]+)?|C\.UTF-8|C\.utf8)$/.test(l)) {
      fail("locale", `${JSON.stringify(l)} is not a locale name`, "Use language_COUNTRY.CHARSET, e.g. locale=en_GB.UTF-8.");
    }
    out.locale = l;
  }
  return out;
}

/** Debian's rules for a login name (adduser/useradd), minus names the base system owns. */
export function checkUserName(name: string, fail: (message: string, hint: string) => never): void {
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(name)) {
    fail(
      `${JSON.stringify(name)} is not a valid user name`,
      "Use up to 32 lowercase letters, digits, _ and -, starting with a letter or _ (Debian's rule), e.g. user=skipper.",
    );
  }
  if (SYSTEM_USERS.has(name)) {
    fail(`${JSON.stringify(name)} is a system account on Debian`, "Pick a personal account name; the image's first user (UID 1000) is renamed to it.");
  }
}

const KEY_TYPES = new Set([
  "ssh-ed25519",
  "ssh-rsa",
  "ssh-dss",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "sk-ssh-ed25519@openssh.com",
  "sk-ecdsa-sha2-nistp256@openssh.com",
]);

/** Why `line` is not one OpenSSH public key (`type base64 [comment]`), or undefined when it is. */
export function publicKeyProblem(line: string): string | undefined {
  if (/PRIVATE KEY/.test(line)) return "this is a private key";
  const m = /^(\S+)\s+([A-Za-z0-9+/]+={0,2})(\s.*)?$/.exec(line);
  if (!m) return "not of the form `type base64 comment`";
  const [, type, b64] = m;
  if (!KEY_TYPES.has(type)) return `unknown key type ${JSON.stringify(type)}`;
  const blob = Buffer.from(b64, "base64");
  if (blob.length < 4) return "the key data is empty";
  const n = blob.readUInt32BE(0);
  // The blob starts with its own type name: catches truncated or mixed-up key data.
  if (blob.subarray(4, 4 + n).toString("latin1") !== type) return "the key data does not match its type";
  return undefined;
}

// --- internal ---

// base-passwd's static accounts plus the ones Debian's own packages add to most images.
const SYSTEM_USERS = new Set([
  "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy",
  "www-data", "backup", "list", "irc", "gnats", "nobody", "_apt", "sshd", "messagebus",
  "systemd-network", "systemd-resolve", "systemd-timesync", "polkitd", "avahi",
]);

function loadKeyEntry(
  entry: string,
  confFile: string | undefined,
  opts: ResolveOptions,
  readFile: (p: string) => string,
  fail: (m: string, h: string) => never,
): string[] {
  const literal = entry.trim();
  const firstWord = literal.split(/\s/)[0];
  if (KEY_TYPES.has(firstWord)) {
    const problem = publicKeyProblem(literal);
    if (problem) fail(`the key given inline is not valid: ${problem}`, "Paste the whole line of the .pub file, or give the file's path.");
    return [literal];
  }
  const path = expandPath(entry, opts.home, confFile && confFile !== "" ? dirname(confFile) : (opts.cwd ?? process.cwd()));
  let text: string;
  try {
    text = readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    fail(
      `cannot read ${path} (${code})`,
      "Give the path of a public key file (~/ is your home; relative paths are relative to the config file) or the key line itself.",
    );
  }
  const keys: string[] = [];
  for (const [i, raw] of text!.split("\n").entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const problem = publicKeyProblem(line);
    if (problem) fail(`${path} line ${i + 1} is not an SSH public key: ${problem}`, "Give the .pub file (e.g. ~/.ssh/id_ed25519.pub), not the private key.");
    keys.push(line);
  }
  if (keys.length === 0) fail(`${path} holds no public key`, "Give a .pub file with one key per line.");
  return keys;
}

function defaultKeys(home: string, readFile: (p: string) => string, readDir: (p: string) => string[], warnings: string[]): string[] {
  const dir = join(home, ".ssh");
  let names: string[];
  try {
    names = readDir(dir);
  } catch {
    return [];
  }
  const keys: string[] = [];
  // Certificates are not authorized_keys material.
  for (const name of names.filter((n) => n.endsWith(".pub") && !n.endsWith("-cert.pub")).sort()) {
    const path = join(dir, name);
    try {
      for (const raw of readFile(path).split("\n")) {
        const line = raw.trim();
        if (line === "" || line.startsWith("#")) continue;
        const problem = publicKeyProblem(line);
        if (problem) warnings.push(`skipped ${path}: ${problem}`);
        else keys.push(line);
      }
    } catch (e) {
      warnings.push(`skipped ${path}: ${(e as Error).message}`);
    }
  }
  return keys;
}

function expandPath(p: string, home: string, base: string): string {
  if (p === "~") return home;
  if (p.startsWith("~/")) return join(home, p.slice(2));
  return isAbsolute(p) ? p : resolvePath(base, p);
}

let regionNames: Intl.DisplayNames | undefined;
function isKnownRegion(code: string): boolean {
  // ICU returns the code itself for regions it does not know.
  regionNames ??= new Intl.DisplayNames(["en"], { type: "region", fallback: "code" });
  return regionNames.of(code) !== code;
}

function isTimezone(tz: string, zoneinfoDir: string | null): boolean {
  if (!/^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+){0,2}$/.test(tz)) return false;
  if (zoneinfoDir) {
    try {
      if (statSync(zoneinfoDir).isDirectory()) {
        try {
          return statSync(join(zoneinfoDir, tz)).isFile();
        } catch {
          return false;
        }
      }
    } catch {
      // no tz database on this machine: judge by form alone
    }
  }
  return tz === "UTC" || tz.includes("/") || Intl.supportedValuesOf("timeZone").includes(tz);
}
