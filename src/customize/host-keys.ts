import { UserError } from "../errors.ts";
import { publicKeyProblem } from "./resolve.ts";

/** One SSH host key pair of the board being flashed (`/etc/ssh/ssh_host_<type>_key{,.pub}`). */
export interface HostKey {
  type: "ed25519" | "ecdsa" | "rsa";
  privateKey: string;
  publicKey: string;
}

const TYPES = new Set(["ed25519", "ecdsa", "rsa"]);

/**
 * Turn the contents of the board's /etc/ssh/ssh_host_*_key files (file name -> text, as read with
 * sudo cat) into HostKeys; types cloud-init cannot carry (dsa) are dropped. Throws when keep-host-keys
 * is asked for and no usable pair is there.
 */
export function hostKeysFromFiles(files: Record<string, string>): HostKey[] {
  const keys: HostKey[] = [];
  for (const [name, text] of Object.entries(files)) {
    const m = /(?:^|\/)ssh_host_([a-z0-9]+)_key$/.exec(name);
    if (!m || !TYPES.has(m[1])) continue;
    const pub = Object.entries(files).find(([n]) => n === `${name}.pub`)?.[1];
    if (pub === undefined) continue;
    keys.push(checkHostKey({ type: m[1] as HostKey["type"], privateKey: text, publicKey: pub.trim() }));
  }
  if (keys.length === 0) {
    throw new UserError("keep-host-keys is set but no SSH host key pair was found on the board.", "Remove keep-host-keys, or check /etc/ssh/ssh_host_*_key on the board.");
  }
  return keys.sort((a, b) => a.type.localeCompare(b.type));
}

export function checkHostKey(k: HostKey): HostKey {
  if (!TYPES.has(k.type)) throw new Error(`unsupported host key type ${k.type}`);
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(k.privateKey)) throw new Error(`ssh_host_${k.type}_key is not a private key`);
  const problem = publicKeyProblem(k.publicKey.trim());
  if (problem) throw new Error(`ssh_host_${k.type}_key.pub: ${problem}`);
  return k;
}
