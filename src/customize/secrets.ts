import { pbkdf2Sync, randomBytes } from "node:crypto";
import { encrypt } from "unixcrypt";

const CRYPT_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/**
 * SHA-512 crypt (`$6$`), byte-identical to `openssl passwd -6 -salt SALT` and glibc crypt(3) for the
 * same salt, UTF-8 passwords included (unixcrypt; FIELD-NOTES §3). Default 5000 rounds, written
 * without a `rounds=` field, as openssl and Raspberry Pi Imager do. A random 16-character salt
 * unless one is given (tests).
 */
export function hashPassword(password: string, salt: string = randomSalt()): string {
  return encrypt(password, `$6$${salt}`);
}

/** A fresh 16-character salt from crypt's alphabet (64 symbols, so each byte maps without bias). */
export function randomSalt(length = 16): string {
  const bytes = randomBytes(length);
  let s = "";
  for (const b of bytes) s += CRYPT_ALPHABET[b & 63];
  return s;
}

/**
 * WPA-PSK as wpa_passphrase and Raspberry Pi Imager compute it: PBKDF2-HMAC-SHA1(passphrase, ssid,
 * 4096 rounds, 32 bytes), hex. Both strings are taken as UTF-8 bytes, as wpa_supplicant does.
 */
export function wifiPsk(passphrase: string, ssid: string): string {
  return pbkdf2Sync(Buffer.from(passphrase, "utf8"), Buffer.from(ssid, "utf8"), 4096, 32, "sha1").toString("hex");
}

/**
 * Shapes of crypt(3) hashes a Debian /etc/shadow accepts that we let through as `password-hash`:
 * SHA-512 (`$6$`), SHA-256 (`$5$`), yescrypt (`$y$`, Debian's default since bookworm).
 */
export function passwordHashKind(hash: string): "sha512" | "sha256" | "yescrypt" | undefined {
  const b64 = "[./0-9A-Za-z]";
  // glibc accepts any salt byte except '$', ':' and newline, up to 16 characters.
  const salt = "[^$:\\n]{0,16}";
  if (new RegExp(`^\\$6\\$(rounds=\\d+\\$)?${salt}\\$${b64}{86}$`).test(hash)) return "sha512";
  if (new RegExp(`^\\$5\\$(rounds=\\d+\\$)?${salt}\\$${b64}{43}$`).test(hash)) return "sha256";
  if (new RegExp(`^\\$y\\$${b64}+\\$${b64}*\\$${b64}{43}$`).test(hash)) return "yescrypt";
  return undefined;
}
