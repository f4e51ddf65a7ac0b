import { randomBytes } from "node:crypto";
import { parse, stringify } from "yaml";
import type { BootFile } from "../core/hooks.ts";
import type { HostKey } from "./host-keys.ts";
import type { BootDir, BootInspection } from "./inspect.ts";
import type { ResolvedCustomization } from "./resolve.ts";
import privateBootSh from "./private-boot.sh" with { type: "text" };
import takeOverUserSh from "./take-over-user.sh" with { type: "text" };

/** Groups Raspberry Pi Imager gives the user it configures through cloud-init (missing ones are created by cloud-init). */
export const IMAGER_GROUPS = "users,adm,dialout,audio,netdev,video,plugdev,cdrom,games,input,gpio,spi,i2c,render,sudo";

/**
 * NoCloud seed files in the shapes Raspberry Pi Imager writes: `user-data` (#cloud-config),
 * `network-config` (v2) when Wi-Fi is set, and `meta-data` when the image has none. Every value goes
 * through the YAML library, so any string round-trips.
 */
export function buildCloudInitFiles(
  r: ResolvedCustomization,
  inspection: Pick<BootInspection, "files" | "networkConfig" | "os" | "bootDirOnImage">,
  hostKeys: readonly HostKey[] = [],
): BootFile[] {
  const doc: Record<string, unknown> = {};
  const bootcmd: string[][] = [];
  if (r.hostname) {
    doc.hostname = r.hostname;
    // Without it sudo complains it cannot resolve the new name (FIELD-NOTES §2).
    doc.manage_etc_hosts = true;
  }
  if (r.user) {
    const u = r.user;
    // cloud-init's users: creates accounts but never renames one; Imager's rename of the first
    // user (and its home, group, sudoers entry) runs first, once, from bootcmd, which precedes
    // users-groups in cloud-init's init stage. The name is an argument, not part of the script.
    bootcmd.push(["cloud-init-per", "once", "flash-live-take-over-user", "sh", "-c", `${takeOverUserSh}\ntake_over_user "$1" --no-create`, "sh", u.name]);
    const entry: Record<string, unknown> = { name: u.name, groups: IMAGER_GROUPS, shell: "/bin/bash" };
    if (u.passwordHash) {
      entry.lock_passwd = false;
      // hashed_passwd, not Imager's passwd: cloud-init ignores passwd for an account that exists
      // already ("'passwd' in user-data is ignored for existing user"), and the take-over above
      // makes this one exist. hashed_passwd is set for new and existing accounts alike.
      entry.hashed_passwd = u.passwordHash;
    } else {
      entry.lock_passwd = true;
    }
    if (u.sshKeys.length > 0) entry.ssh_authorized_keys = [...u.sshKeys];
    // Imager grants password-less sudo whenever keys are set; we do only when there is no
    // password to type, so a configured password is what sudo asks for.
    if (!u.passwordHash) entry.sudo = "ALL=(ALL) NOPASSWD:ALL";
    doc.users = [entry];
  }
  if (r.sshPasswordAuth !== undefined) doc.ssh_pwauth = r.sshPasswordAuth;
  if (r.timezone) doc.timezone = r.timezone;
  if (r.keyboardLayout) doc.keyboard = { model: "pc105", layout: r.keyboardLayout };
  if (r.locale) doc.locale = r.locale;
  if (r.keepHostKeys && hostKeys.length > 0) {
    const keys: Record<string, string> = {};
    for (const k of hostKeys) {
      keys[`${k.type}_private`] = ensureNewline(k.privateKey);
      keys[`${k.type}_public`] = k.publicKey.trim();
    }
    doc.ssh_deletekeys = true;
    doc.ssh_keys = keys;
  }

  // The seed stays on the boot partition, which a FAT mounted with the default masks shows to every
  // user: once, make that mount root-only (its fstab line and the live mount).
  const mountPoints = [inspection.bootDirOnImage, ...BOOT_DIRS.filter((d) => d !== inspection.bootDirOnImage)];
  bootcmd.push(["cloud-init-per", "once", "flash-live-private-boot", "sh", "-c", `${privateBootSh}\nprivate_boot "$@"`, "sh", ...mountPoints]);
  // cloud-init runs bootcmd as one sh script whose status is its last command's: without set -e a
  // failed take-over would pass unreported. (cloud-init-per marks a failed command as run, so the
  // next boot runs the commands a failure skipped.)
  doc.bootcmd = ["set -e", ...bootcmd];

  const files: BootFile[] = [{ path: "user-data", data: `#cloud-config\n${yaml(doc)}` }];
  if (r.wifi) files.push({ path: "network-config", data: buildNetworkConfig(r, inspection) });
  const hasMetaData = inspection.files.some((f) => f.toLowerCase() === "meta-data");
  // NoCloud needs both files; an image's own meta-data (dsmode, instance-id) is kept.
  if (!hasMetaData) {
    const meta: Record<string, string> = { "instance-id": `flash-live-${randomBytes(8).toString("hex")}` };
    if (r.hostname) meta["local-hostname"] = r.hostname;
    files.push({ path: "meta-data", data: yaml(meta) });
  }
  return files;
}

// --- internal ---

const BOOT_DIRS: readonly BootDir[] = ["/boot/firmware", "/boot"];

function buildNetworkConfig(r: ResolvedCustomization, inspection: Pick<BootInspection, "networkConfig" | "os">): string {
  const wifi = r.wifi!;
  // cloud-init hands Wi-Fi only to netplan ("Wifi configuration is only available to distros with
  // netplan rendering support"), so this file is written for netplan: match globs and
  // regulatory-domain are netplan features.
  const wlan: Record<string, unknown> = {
    dhcp4: true,
    dhcp6: true,
    optional: true,
    "access-points": { [wifi.ssid]: { password: wifi.psk } },
  };
  if (r.wifiCountry) wlan["regulatory-domain"] = r.wifiCountry;

  // A network-config replaces cloud-init's fallback (DHCP on the first Ethernet port): keep the
  // image's own Ethernet settings, or say the fallback out loud, so the board stays reachable.
  let base: Record<string, unknown> = {};
  if (inspection.networkConfig) {
    try {
      const parsed = parse(inspection.networkConfig);
      if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) {
        const inner = (parsed as Record<string, unknown>).network;
        base = structuredClone((inner && typeof inner === "object" ? inner : parsed) as Record<string, unknown>);
      }
    } catch {
      // An unreadable network-config would not have worked on the board either: replace it.
    }
  }
  if (base.version !== 2) base = {};
  const net: Record<string, unknown> = { version: 2, ...base };
  if (inspection.os === "raspberry-pi-os" && net.renderer === undefined) net.renderer = "NetworkManager";
  if (!net.ethernets) net.ethernets = { eth: { match: { name: "e*" }, dhcp4: true, dhcp6: true, optional: true } };
  const wifis = { ...((net.wifis as Record<string, unknown> | undefined) ?? {}) };
  wifis.wlan0 = wlan;
  net.wifis = wifis;
  return yaml({ network: net });
}

function yaml(v: unknown): string {
  // lineWidth 0: never fold long values (keys, hashes) across lines.
  return stringify(v, { lineWidth: 0 });
}

function ensureNewline(s: string): string {
  return s.endsWith("\n") ? s : `${s}\n`;
}
