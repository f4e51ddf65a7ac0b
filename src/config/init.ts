import { closeSync, existsSync, fsyncSync, openSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, writeSync } from "node:fs";
import { homedir, userInfo } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import * as clack from "@clack/prompts";
import { encrypt } from "unixcrypt";
import { CancelledError, UserError } from "../errors.ts";
import type { CustomizationConfig } from "./schema.ts";
import { formatSeedConf } from "./_seed-format.ts";

/** The part of @clack/prompts the wizard uses; tests pass a scripted stand-in. */
export type ConfigInitPrompts = Pick<typeof clack, "intro" | "outro" | "note" | "log" | "text" | "password" | "confirm" | "multiselect" | "select" | "isCancel">;

export interface RunConfigInitOptions {
  /** File to write (relative to cwd). */
  file: string;
  /** Where `.ssh/*.pub` is looked for; default: the user's home. */
  home?: string;
  prompts?: ConfigInitPrompts;
  /** Default: stdin and stdout are both terminals. */
  interactive?: boolean;
  /** Shown as the hint when not interactive (the command passes its usage text). */
  usage?: string;
  cwd?: string;
  /** Default: read from /etc/timezone or /etc/localtime. */
  hostTimezone?: string;
  env?: Record<string, string | undefined>;
}

export interface ConfigInitResult {
  file: string;
  config: CustomizationConfig;
}

export const DEFAULT_CONFIG_FILE = "flash-live.conf";

/**
 * The `config init` wizard: asks for the customization settings and writes them in the seed's
 * key=value format, created with mode 0600 because it may hold a password or Wi-Fi key.
 */
export async function runConfigInit(options: RunConfigInitOptions): Promise<ConfigInitResult> {
  const p = options.prompts ?? clack;
  const interactive = options.interactive ?? Boolean(process.stdin.isTTY && process.stdout.isTTY);
  const file = resolve(options.cwd ?? process.cwd(), options.file);
  if (!interactive)
    throw new UserError(
      "`config init` asks questions and needs a terminal.",
      options.usage ?? `Run it in a terminal, or write ${basename(file)} by hand (key=value lines, see example.conf).`,
      2,
    );
  const home = options.home ?? homedir();
  const env = options.env ?? process.env;
  const ask = async <T>(answer: Promise<T>): Promise<Exclude<T, symbol>> => {
    const value = await answer;
    if (p.isCancel(value)) throw new CancelledError();
    return value as Exclude<T, symbol>;
  };

  p.intro(`flash-live config init: ${file}`);
  if (existsSync(file)) {
    const overwrite = await ask(p.confirm({ message: `${file} exists. Overwrite it?`, initialValue: false }));
    if (!overwrite) throw new CancelledError();
  }

  const config: CustomizationConfig = {};
  config.hostname = await ask(
    p.text({ message: "Hostname of the flashed board", placeholder: "myboat", validate: (v) => checkHostname(v ?? "") }),
  );

  // Like Raspberry Pi Imager: the user's own login name is the likely choice on the board too.
  const me = env.SUDO_USER || env.USER || env.LOGNAME || userInfo().username;
  const user = (
    await ask(
      p.text({
        message: "User name (empty: keep the image's default user)",
        initialValue: me !== "root" && !checkUser(me) ? me : "",
        validate: (v) => (v ? checkUser(v) : undefined),
      }),
    )
  ).trim();
  if (user) {
    config.user = user;
    const password = await ask(
      p.password({ message: `Password for ${user} (empty: none, log in with SSH keys)`, validate: (v) => checkNoLineBreak(v ?? "") }),
    );
    if (password) {
      await ask(
        p.password({ message: "Password again", validate: (v) => (v === password ? undefined : "The passwords differ. Type the same password again.") }),
      );
      const store = await ask(
        p.select({
          message: "Store the password as",
          initialValue: "hash",
          options: [
            { value: "hash", label: "SHA-512 crypt hash (password-hash)", hint: "recommended" },
            { value: "plain", label: "plaintext (password)", hint: "hashed only when flashing" },
          ],
        }),
      );
      if (store === "hash") config.passwordHash = encrypt(password);
      else config.password = password;
    }
  }

  const keys = listPublicKeys(home);
  if (keys.length > 0) {
    const picked = await ask(
      p.multiselect({
        message: "SSH public keys allowed to log in",
        options: keys.map((k) => ({ value: k, label: k })),
        initialValues: keys,
        required: false,
      }),
    );
    if (picked.length > 0) config.sshKeys = picked;
  } else {
    p.log.info(`No ${join(home, ".ssh")}/*.pub found: add ssh-key=PATH lines to the file later if you need them.`);
  }

  if (await ask(p.confirm({ message: "Configure Wi-Fi?", initialValue: false }))) {
    config.wifiSsid = await ask(p.text({ message: "Wi-Fi network name (SSID)", validate: (v) => checkSsid(v ?? "") }));
    config.wifiPassword = await ask(p.password({ message: "Wi-Fi password", validate: (v) => checkWifiPassword(v ?? "") }));
    config.wifiCountry = (
      await ask(
        p.text({
          message: "Wi-Fi country (ISO 3166 two letters, sets the radio regulatory domain)",
          initialValue: guessCountry(env),
          validate: (v) => (/^[A-Za-z]{2}$/.test((v ?? "").trim()) ? undefined : "Two letters, like GB, FI or US."),
        }),
      )
    )
      .trim()
      .toUpperCase();
  }

  const timezone = (
    await ask(
      p.text({
        message: "Timezone (empty: keep the image's)",
        initialValue: options.hostTimezone ?? readHostTimezone() ?? "",
        validate: (v) => (v && v.trim() ? checkTimezone(v.trim()) : undefined),
      }),
    )
  ).trim();
  if (timezone) config.timezone = timezone;

  writePrivateFile(file, formatSeedConf(config, [`Written by \`flash-live config init\` on ${new Date().toISOString().slice(0, 10)}.`, "Keys: see example.conf. This file may hold secrets: keep it mode 0600."]));
  if (user && !config.password && !config.passwordHash && !config.sshKeys)
    p.log.warn(`${user} has neither a password nor an SSH key: you will not be able to log in as ${user}.`);
  p.outro(`Wrote ${file} (mode 0600). Use it with: flash-live flash --config ${options.file} HOST IMAGE`);
  return { file, config };
}

// --- internal ---

/**
 * Created 0600 from the start (never world-readable, not even between create and chmod), under a
 * temporary name in the same directory, then renamed over the target so an existing file is
 * replaced whole or not at all.
 */
function writePrivateFile(file: string, text: string): void {
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.tmp`);
  const fd = openSync(tmp, "wx", 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, file);
}

/** `~/.ssh/*.pub`, written with `~/` as in the seed's example, so the file reads the same for its owner. */
function listPublicKeys(home: string): string[] {
  try {
    return readdirSync(join(home, ".ssh"))
      .filter((f) => f.endsWith(".pub"))
      .sort()
      .map((f) => `~/.ssh/${f}`);
  } catch {
    return [];
  }
}

export function readHostTimezone(): string | undefined {
  try {
    const tz = readFileSync("/etc/timezone", "utf8").trim();
    if (tz && !checkTimezone(tz)) return tz;
  } catch {}
  try {
    const m = /zoneinfo\/(.+)$/.exec(readlinkSync("/etc/localtime"));
    if (m && !checkTimezone(m[1]!)) return m[1];
  } catch {}
  return undefined;
}

/** `LANG=fi_FI.UTF-8` -> FI; the seed's default GB otherwise. */
function guessCountry(env: Record<string, string | undefined>): string {
  const m = /^[a-z]{2,3}_([A-Z]{2})\b/.exec(env.LC_ALL || env.LC_CTYPE || env.LANG || "");
  return m ? m[1]! : "GB";
}

function checkNoLineBreak(v: string): string | undefined {
  return /[\r\n]/.test(v) ? "No line breaks, please." : undefined;
}

export function checkHostname(v: string): string | undefined {
  if (!v) return "A hostname is needed.";
  return /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(v)
    ? undefined
    : "Letters, digits and hyphens, at most 63, not starting or ending with a hyphen (RFC 1123).";
}

export function checkUser(v: string): string | undefined {
  if (v === "root") return "Pick a normal user; root is not replaced.";
  return /^[a-z_][a-z0-9_-]{0,31}$/.test(v) ? undefined : "Lower-case letters, digits, _ and -, starting with a letter or _, at most 32.";
}

function checkSsid(v: string): string | undefined {
  const bytes = new TextEncoder().encode(v).length;
  if (bytes < 1 || bytes > 32) return "An SSID is 1 to 32 bytes long.";
  return checkNoLineBreak(v);
}

/** WPA2-PSK: a passphrase of 8-63 printable ASCII characters, or the 64-hex-digit key itself. */
export function checkWifiPassword(v: string): string | undefined {
  if (/^[0-9a-fA-F]{64}$/.test(v)) return undefined;
  return /^[\x20-\x7e]{8,63}$/.test(v) ? undefined : "8 to 63 printable ASCII characters (or a 64-digit hex key).";
}

export function checkTimezone(v: string): string | undefined {
  try {
    new Intl.DateTimeFormat("en", { timeZone: v });
    return /^[A-Za-z0-9_+\-]+(\/[A-Za-z0-9_+\-]+)*$/.test(v) ? undefined : "Like Europe/Helsinki or UTC.";
  } catch {
    return "Unknown timezone; like Europe/Helsinki or UTC.";
  }
}
