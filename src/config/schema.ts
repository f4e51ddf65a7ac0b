/**
 * The user's configuration as loaded from all layers (defaults < file < env < flags), before
 * resolution. Keys are camelCase here; in the seed's key=value `.conf` format they are kebab-case
 * (`wifi-ssid` <-> wifiSsid, `ssh-key` (repeatable) <-> sshKeys).
 */
export interface CustomizationConfig {
  hostname?: string;
  user?: string;
  /** Plaintext; hashed on the sending side (SHA-512 crypt). Comes from a file or env only, never a flag. */
  password?: string;
  /** An already hashed `$6$...` / `$y$...` value. */
  passwordHash?: string;
  /** Public key files (`~/` expanded) or literal `ssh-ed25519 AAAA...` lines. */
  sshKeys?: string[];
  wifiSsid?: string;
  wifiPassword?: string;
  /** ISO 3166 alpha-2, default GB when Wi-Fi is configured. */
  wifiCountry?: string;
  timezone?: string;
  keyboardLayout?: string;
  locale?: string;
  sshPasswordAuth?: boolean;
  /** Carry the board's current SSH host keys into the new image. */
  keepHostKeys?: boolean;
}

export type FlashMode = "auto" | "ramfs" | "stream";
export type CustomizeWith = "auto" | "cloud-init" | "firstrun";

export interface FlashLiveConfig extends CustomizationConfig {
  mode?: FlashMode;
  customizeWith?: CustomizeWith;
  /** systemd unit name patterns stopped before the write (merged from plugins; see README "Config layers"). */
  services?: string[];
  /** Plugin module paths, relative to the config file that names them. */
  plugins?: string[];
  verify?: boolean;
  /** How the image travels to the board: measured (auto), the file as it is, gzip -1, lzop -1, xz -1 or raw bytes made on this side. */
  transport?: "auto" | "as-is" | "gzip" | "lzo" | "xz" | "raw";
  /** Leave a record of the flash (image, hash, verify result) on the new boot partition: flash-live.txt. */
  record?: boolean;
  /** Use the image's block map (IMAGE.bmap next to it, or bmapFile): write only mapped ranges. */
  bmap?: boolean;
  /** A block map elsewhere than next to the image. */
  bmapFile?: string;
  acceptNewHostKey?: boolean;
  knownHostsFile?: string;
  sshConfigFile?: string;
  identityFile?: string;
  yes?: boolean;
}

/** Keys accepted in the seed's key=value file, mapped to config keys. */
export const CONF_KEYS = {
  hostname: "hostname",
  user: "user",
  password: "password",
  "password-hash": "passwordHash",
  "ssh-key": "sshKeys",
  "wifi-ssid": "wifiSsid",
  "wifi-password": "wifiPassword",
  "wifi-country": "wifiCountry",
  timezone: "timezone",
  "keyboard-layout": "keyboardLayout",
  locale: "locale",
  "ssh-password-auth": "sshPasswordAuth",
  "keep-host-keys": "keepHostKeys",
} as const satisfies Record<string, keyof CustomizationConfig>;
