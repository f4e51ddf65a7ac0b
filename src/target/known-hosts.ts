/**
 * known_hosts as OpenSSH reads and writes it (sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT"). ssh2 checks
 * nothing by itself and no npm package handles hashed entries and `[host]:port` (FIELD-NOTES §3),
 * so this is written here and tested against `ssh-keygen -F` and a real `ssh`.
 */
import { createHash, createHmac, randomBytes } from "node:crypto";
import { chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, writeFileSync, writeSync } from "node:fs";
import { dirname } from "node:path";

export interface KnownHostEntry {
  file: string;
  /** 1-based line number, as ssh and ssh-keygen print it. */
  line: number;
  marker?: "@revoked" | "@cert-authority";
  /** The host field as written: comma list of patterns, or one `|1|salt|hmac` hash. */
  hosts: string;
  /** Key type as written, e.g. "ssh-ed25519". */
  type: string;
  /** Base64 key blob. */
  key: string;
}

export type HostKeyCheck =
  | { status: "known"; name: string; entry: KnownHostEntry }
  /** No key of this type is known for the host; `otherKeys` lists keys of other types that are. */
  | { status: "unknown"; name: string; otherKeys: KnownHostEntry[] }
  /** A key of the same type is known and differs: the host key changed (or someone is in the middle). */
  | { status: "changed"; name: string; entry: KnownHostEntry }
  | { status: "revoked"; name: string; entry: KnownHostEntry };

/** The name a host is filed under: `host` on port 22, `[host]:port` otherwise (ssh lowercases it). */
export function knownHostName(host: string, port = 22): string {
  const h = host.toLowerCase();
  return port === 22 ? h : `[${h}]:${port}`;
}

/** Key type named inside an SSH public key blob (its first string). */
export function keyBlobType(blob: Uint8Array): string {
  const b = Buffer.from(blob);
  if (b.length < 4) return "";
  const len = b.readUInt32BE(0);
  return b.subarray(4, 4 + len).toString("latin1");
}

/** `SHA256:...` as ssh prints it (base64 without padding). */
export function fingerprint(blob: Uint8Array): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

export function parseKnownHosts(text: string, file: string): KnownHostEntry[] {
  const out: KnownHostEntry[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!.trim();
    if (raw === "" || raw.startsWith("#")) continue;
    const fields = raw.split(/[ \t]+/);
    let marker: KnownHostEntry["marker"];
    if (fields[0]!.startsWith("@")) {
      const m = fields.shift()!;
      if (m !== "@revoked" && m !== "@cert-authority") continue; // unknown marker: ssh ignores the line
      marker = m;
    }
    const [hosts, type, key] = fields;
    if (!hosts || !type || !key) continue;
    out.push({ file, line: i + 1, marker, hosts, type, key });
  }
  return out;
}

/** Read the files that exist; a missing file is no error (ssh treats it as empty). */
export function loadKnownHosts(files: readonly string[]): KnownHostEntry[] {
  const out: KnownHostEntry[] = [];
  for (const f of files) {
    let text: string;
    try {
      text = readFileSync(f, "utf8");
    } catch {
      continue;
    }
    out.push(...parseKnownHosts(text, f));
  }
  return out;
}

/**
 * Does a host field name `name` (already in `knownHostName` form)? Hashed fields compare
 * HMAC-SHA1(salt, name); pattern lists allow `*`, `?` and `!negation` (a negated match wins).
 */
export function hostFieldMatches(hosts: string, name: string): boolean {
  if (hosts.startsWith("|1|")) {
    const [, , salt, hash] = hosts.split("|");
    if (!salt || !hash) return false;
    const mac = createHmac("sha1", Buffer.from(salt, "base64")).update(name).digest("base64");
    return mac === hash;
  }
  const lname = name.toLowerCase();
  let matched = false;
  for (const pat of hosts.split(",")) {
    if (pat.startsWith("!")) {
      if (globMatch(pat.slice(1).toLowerCase(), lname)) return false;
    } else if (globMatch(pat.toLowerCase(), lname)) matched = true;
  }
  return matched;
}

/** ssh's match_pattern: `*` any run, `?` exactly one character, everything else literal. */
export function globMatch(pattern: string, text: string): boolean {
  const re = pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replaceAll("*", ".*").replaceAll("?", ".");
  return new RegExp(`^${re}$`, "s").test(text);
}

export interface HostKeyQuery {
  host: string;
  port?: number;
  /** The key blob the server presented. */
  key: Uint8Array;
  /** known_hosts files in order (user files, then global ones). */
  files: readonly string[];
  /** HostKeyAlias: look the key up under this name instead (no port suffix, as ssh does). */
  alias?: string;
}

/** Check a presented host key the way ssh does (sshconnect.c check_host_key, CheckHostIP off). */
export function checkHostKey(q: HostKeyQuery): HostKeyCheck {
  const name = q.alias ? q.alias.toLowerCase() : knownHostName(q.host, q.port);
  const keyB64 = Buffer.from(q.key).toString("base64");
  const type = keyBlobType(q.key);
  const entries = loadKnownHosts(q.files);
  const forHost = entries.filter((e) => e.marker !== "@cert-authority" && hostFieldMatches(e.hosts, name));
  const revoked = forHost.find((e) => e.marker === "@revoked" && e.key === keyB64);
  if (revoked) return { status: "revoked", name, entry: revoked };
  const plain = forHost.filter((e) => !e.marker);
  const same = plain.filter((e) => e.type === type);
  const hit = same.find((e) => e.key === keyB64);
  if (hit) return { status: "known", name, entry: hit };
  if (same.length > 0) return { status: "changed", name, entry: same[0]! };
  return { status: "unknown", name, otherKeys: plain };
}

/**
 * Key types known for a host, in file order: the SSH adapter offers these first so the server
 * presents a key we can check (ssh orders HostKeyAlgorithms the same way).
 */
export function knownKeyTypes(host: string, port: number, files: readonly string[], alias?: string): string[] {
  const name = alias ? alias.toLowerCase() : knownHostName(host, port);
  const types: string[] = [];
  for (const e of loadKnownHosts(files)) {
    if (!e.marker && hostFieldMatches(e.hosts, name) && !types.includes(e.type)) types.push(e.type);
  }
  return types;
}

/** The line ssh would write for this host and key (hashed like `HashKnownHosts yes`). */
export function formatKnownHostLine(name: string, key: Uint8Array, hash: boolean): string {
  let field = name;
  if (hash) {
    const salt = randomBytes(20);
    field = `|1|${salt.toString("base64")}|${createHmac("sha1", salt).update(name).digest("base64")}`;
  }
  return `${field} ${keyBlobType(key)} ${Buffer.from(key).toString("base64")}`;
}

export interface KnownHostWrite {
  host: string;
  port?: number;
  key: Uint8Array;
  /** Hash the host name (HashKnownHosts yes). */
  hash?: boolean;
  alias?: string;
}

/** Append an entry, creating the file (and a missing ~/.ssh, mode 0700) like ssh does. */
export function addKnownHost(file: string, w: KnownHostWrite): void {
  const name = w.alias ? w.alias.toLowerCase() : knownHostName(w.host, w.port);
  const dir = dirname(file);
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  let prefix = "";
  if (existsSync(file)) {
    const text = readFileSync(file, "utf8");
    if (text.length > 0 && !text.endsWith("\n")) prefix = "\n";
  }
  const fd = openSync(file, "a", 0o644);
  try {
    writeSync(fd, `${prefix}${formatKnownHostLine(name, w.key, w.hash ?? false)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Remove every entry for host:port, like `ssh-keygen -R` (whole lines, any key type, plain or
 * hashed; @revoked and @cert-authority lines stay). Keeps the old file as FILE.old like ssh-keygen.
 * Returns how many lines were removed.
 */
export function removeKnownHost(file: string, host: string, port = 22, alias?: string): number {
  if (!existsSync(file)) return 0;
  const name = alias ? alias.toLowerCase() : knownHostName(host, port);
  const text = readFileSync(file, "utf8");
  const drop = new Set(
    parseKnownHosts(text, file)
      .filter((e) => !e.marker && hostFieldMatches(e.hosts, name))
      .map((e) => e.line),
  );
  if (drop.size === 0) return 0;
  const kept = text.split("\n").filter((_, i) => !drop.has(i + 1));
  const mode = statSync(file).mode & 0o777;
  writeFileSync(`${file}.old`, text, { mode });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, kept.join("\n"), { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, file);
  return drop.size;
}

/**
 * After a re-flash the board has a new host key: drop the old entries for host:port and file the
 * new key. The caller decides whether that is allowed; this only does it.
 */
export function replaceKnownHost(file: string, w: KnownHostWrite): { removed: number } {
  const removed = removeKnownHost(file, w.host, w.port, w.alias);
  addKnownHost(file, w);
  return { removed };
}
