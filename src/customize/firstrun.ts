import { randomUUID } from "node:crypto";
import { shellQuote } from "../util/shell.ts";
import firstrunBody from "./firstrun-body.sh" with { type: "text" };
import type { HostKey } from "./host-keys.ts";
import type { BootDir } from "./inspect.ts";
import type { ResolvedCustomization } from "./resolve.ts";
import takeOverUserSh from "./take-over-user.sh" with { type: "text" };

/** The arguments that start firstrun.sh, as Raspberry Pi Imager appends them (with the leading space the script strips). */
export function firstrunRunArgs(bootDir: BootDir): string {
  return ` systemd.run=${bootDir}/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target`;
}

/**
 * firstrun.sh: a header of FL_*=value lines (every value through shellQuote) followed by fixed
 * shell text (take-over-user.sh, firstrun-body.sh). POSIX sh; runs under dash and bash.
 */
export function buildFirstrunScript(r: ResolvedCustomization, bootDir: BootDir, hostKeys: readonly HostKey[] = []): string {
  const vars: [string, string][] = [
    ["FL_BOOT_DIR", bootDir],
    ["FL_RUN_ARGS", firstrunRunArgs(bootDir)],
    ["FL_HOSTNAME", r.hostname ?? ""],
    ["FL_USER", r.user?.name ?? ""],
    ["FL_PASSWORD_HASH", r.user?.passwordHash ?? ""],
    ["FL_AUTHORIZED_KEYS", r.user?.sshKeys.join("\n") ?? ""],
    ["FL_SSH_PASSWORD_AUTH", r.sshPasswordAuth === undefined ? "" : r.sshPasswordAuth ? "yes" : "no"],
    ["FL_WPA_SUPPLICANT_CONF", r.wifi ? wpaSupplicantConf(r.wifi, r.wifiCountry ?? "GB") : ""],
    ["FL_NM_CONNECTION", r.wifi ? nmConnection(r.wifi) : ""],
    ["FL_NETWORKD_WLAN", r.wifi ? "[Match]\nName=wlan0\n\n[Network]\nDHCP=yes" : ""],
    ["FL_TIMEZONE", r.timezone ?? ""],
    ["FL_KEYBOARD_FILE", r.keyboardLayout ? keyboardFile(r.keyboardLayout) : ""],
    ["FL_LOCALE", r.locale ?? ""],
    ["FL_LOCALE_GEN", r.locale ? localeGenLine(r.locale) : ""],
    ["FL_KEEP_HOST_KEYS", r.keepHostKeys && hostKeys.length > 0 ? "yes" : ""],
  ];
  const keyCalls = hostKeys.map((k) => `\tfl_host_key ${shellQuote(k.type)} ${shellQuote(k.privateKey.replace(/\n+$/, ""))} ${shellQuote(k.publicKey.trim())}`);
  return [
    "#!/bin/sh",
    "# Written by flash-live: applies the first-boot customization once, then removes itself.",
    "# SC2016: the values below are literal on purpose. SC2317: steps are called through fl_step.",
    "# shellcheck disable=SC2016,SC2317",
    "",
    ...vars.map(([k, v]) => `${k}=${shellQuote(v)}`),
    "",
    "fl_host_keys_data() {",
    ...keyCalls,
    "\treturn 0",
    "}",
    "",
    takeOverUserSh.trimEnd(),
    "",
    firstrunBody.trimEnd(),
    "",
  ].join("\n");
}

/** wpa_supplicant.conf as Imager writes it, with the SSID in hex so no character in it needs escaping. */
export function wpaSupplicantConf(wifi: { ssid: string; psk: string }, country: string): string {
  return [
    `country=${country}`,
    "ctrl_interface=DIR=/var/run/wpa_supplicant GROUP=netdev",
    "ap_scan=1",
    "",
    "update_config=1",
    "network={",
    `\tssid=${Buffer.from(wifi.ssid, "utf8").toString("hex")}`,
    `\tpsk=${wifi.psk}`,
    "}",
  ].join("\n");
}

/**
 * A NetworkManager keyfile with the raw PSK. NetworkManager writes an SSID as text when it is plain
 * and as a `;`-terminated byte list otherwise; so do we (only [A-Za-z0-9 _.-] count as plain here,
 * which keeps clear of keyfile escapes and of the byte-list syntax).
 */
export function nmConnection(wifi: { ssid: string; psk: string }): string {
  const plain = /^[A-Za-z0-9_.-]([A-Za-z0-9 _.-]*[A-Za-z0-9_.-])?$/.test(wifi.ssid) && !/^\d+$/.test(wifi.ssid);
  const ssid = plain ? wifi.ssid : [...Buffer.from(wifi.ssid, "utf8")].map((b) => `${b};`).join("");
  return [
    "[connection]",
    "id=preconfigured",
    `uuid=${randomUUID()}`,
    "type=wifi",
    "",
    "[wifi]",
    "mode=infrastructure",
    `ssid=${ssid}`,
    "",
    "[wifi-security]",
    "auth-alg=open",
    "key-mgmt=wpa-psk",
    `psk=${wifi.psk}`,
    "",
    "[ipv4]",
    "method=auto",
    "",
    "[ipv6]",
    "addr-gen-mode=default",
    "method=auto",
  ].join("\n");
}

/** /etc/default/keyboard as Imager writes it. */
function keyboardFile(layout: string): string {
  return `XKBMODEL="pc105"\nXKBLAYOUT="${layout}"\nXKBVARIANT=""\nXKBOPTIONS=""`;
}

/** The /etc/locale.gen line that makes `locale` available ("en_GB.UTF-8 UTF-8"); "" when none is needed. */
export function localeGenLine(locale: string): string {
  if (/^C\./.test(locale)) return ""; // built into glibc
  const codeset = /\.([^@]+)/.exec(locale)?.[1];
  if (!codeset) return "";
  const charset = codeset.toLowerCase().replace(/-/g, "") === "utf8" ? "UTF-8" : codeset.toUpperCase();
  return `${locale} ${charset}`;
}
