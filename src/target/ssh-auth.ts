/**
 * Public-key authentication the way OpenSSH does it (sshconnect2.c pubkey_prepare): agent keys
 * that match an IdentityFile, then the other agent keys (unless IdentitiesOnly), then identity
 * files not in the agent. Everything is offered through one ssh2 agent object so that, as with
 * ssh, a passphrase is asked only after the server said it would accept that key.
 */
import { readFileSync } from "node:fs";
import ssh2 from "./_ssh2.ts";
import type { ParsedKey } from "ssh2";
import { fingerprint } from "./known-hosts.ts";
import { isFile } from "./ssh-config.ts";

const { BaseAgent, OpenSSHAgent } = ssh2 as unknown as {
  BaseAgent: new () => object;
  OpenSSHAgent: new (socket: string) => AgentLike;
};
const parseKey = ssh2.utils.parseKey as (data: string | Buffer, passphrase?: string) => ParsedKey | ParsedKey[] | Error;

type Cb<T> = (err: Error | null, v?: T) => void;
interface AgentLike {
  getIdentities(cb: Cb<ParsedKey[]>): void;
  sign(pub: ParsedKey, data: Buffer, options: { hash?: string }, cb: Cb<Buffer>): void;
}

export type Prompt = (question: string, opts: { secret: boolean }) => Promise<string>;

interface Identity {
  /** What to call it in messages. */
  label: string;
  pub: ParsedKey;
  blob: string;
  fromAgent: boolean;
  /** Private key file, when not signed by the agent. */
  file?: string;
  encrypted?: boolean;
}

export interface AuthReport {
  /** Keys offered, in order. */
  offered: string[];
  /** What could not be used and why (missing passphrase, unreadable file...). */
  notes: string[];
  /** Keys the server would accept but that could not sign (passphrase not given). */
  acceptedButUnusable: string[];
}

export interface KeychainOptions {
  /** Agent socket; undefined = none. */
  agentSocket?: string;
  identityFiles: readonly string[];
  /** Missing files are noted (not an error) unless they are ssh's defaults. */
  identityFilesAreDefaults: boolean;
  identitiesOnly: boolean;
  interactive: boolean;
  prompt?: Prompt;
  log?: (msg: string) => void;
}

/** Read the keys to offer. Async because it asks the agent for its identities. */
export async function loadKeychain(opts: KeychainOptions): Promise<{ agent: object; report: AuthReport; count: number }> {
  const report: AuthReport = { offered: [], notes: [], acceptedButUnusable: [] };
  const real = opts.agentSocket ? new OpenSSHAgent(opts.agentSocket) : undefined;
  let agentKeys: ParsedKey[] = [];
  if (real) {
    try {
      agentKeys = await withTimeout(new Promise<ParsedKey[]>((res, rej) => real.getIdentities((e, k) => (e ? rej(e) : res(k ?? [])))), 5000);
    } catch (e) {
      report.notes.push(`ssh-agent at ${opts.agentSocket} did not answer (${(e as Error).message})`);
    }
  }
  const files: Identity[] = [];
  for (const path of opts.identityFiles) {
    const id = readIdentityFile(path, opts.identityFilesAreDefaults, report);
    if (id) files.push(id);
  }
  const agentBlobs = new Map(agentKeys.map((k) => [k.getPublicSSH().toString("base64"), k] as const));
  const viaAgent: Identity[] = [];
  const fileOnly: Identity[] = [];
  for (const f of files) {
    const k = agentBlobs.get(f.blob);
    if (k) viaAgent.push({ ...f, pub: k, fromAgent: true, label: `${f.label} (in ssh-agent)` });
    else fileOnly.push(f);
  }
  const otherAgent: Identity[] = opts.identitiesOnly
    ? []
    : agentKeys
        .filter((k) => !files.some((f) => f.blob === k.getPublicSSH().toString("base64")))
        .map((k) => ({
          label: `ssh-agent key ${k.type} ${fingerprint(k.getPublicSSH())}${k.comment ? ` (${k.comment})` : ""}`,
          pub: k,
          blob: k.getPublicSSH().toString("base64"),
          fromAgent: true,
        }));
  const order = [...viaAgent, ...otherAgent, ...fileOnly];
  report.offered = order.map((i) => i.label);

  const byBlob = new Map(order.map((i) => [i.blob, i] as const));
  const unlocked = new Map<string, ParsedKey>();
  const agent = new (class extends BaseAgent {
    getIdentities(cb: Cb<ParsedKey[]>) {
      cb(null, order.map((i) => i.pub));
    }
    sign(pub: ParsedKey, data: Buffer, options: { hash?: string } | Cb<Buffer>, cb?: Cb<Buffer>) {
      if (typeof options === "function") {
        cb = options;
        options = {};
      }
      const done = cb!;
      const id = byBlob.get(pub.getPublicSSH().toString("base64"));
      if (!id) return done(new Error("unknown key"));
      if (id.fromAgent && real) return real.sign(id.pub, data, options, done);
      unlockKey(id, opts, unlocked, report).then(
        (key) => {
          if (!key) return done(new Error(`${id.label}: not unlocked`));
          const sig = key.sign(data, (options as { hash?: string }).hash);
          if (sig instanceof Error) done(sig);
          else done(null, sig);
        },
        (e: Error) => done(e),
      );
    }
  })();
  return { agent, report, count: order.length };
}

/** Public half of an identity file: from FILE.pub, or the file itself (unencrypted or new-format). */
function readIdentityFile(path: string, isDefault: boolean, report: AuthReport): Identity | undefined {
  if (!isFile(path)) {
    if (!isDefault) report.notes.push(`identity file ${path} not found`);
    return undefined;
  }
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    report.notes.push(`cannot read ${path}: ${(e as Error).message}`);
    return undefined;
  }
  let pub: ParsedKey | undefined;
  let encrypted = false;
  const parsed = first(parseKey(text));
  if (!(parsed instanceof Error)) pub = parsed;
  else if (/passphrase/i.test(parsed.message)) {
    encrypted = true;
    const blob = openSshPublicBlob(text);
    if (blob) pub = first(parseKey(`${blobType(blob)} ${blob.toString("base64")}`)) as ParsedKey;
  } else {
    report.notes.push(`${path}: not a usable private key (${parsed.message})`);
    return undefined;
  }
  if (!pub && isFile(`${path}.pub`)) {
    const p = first(parseKey(readFileSync(`${path}.pub`, "utf8")));
    if (!(p instanceof Error)) pub = p;
  }
  if (!pub) {
    // Old-style encrypted PEM without a .pub next to it: the public key needs the passphrase.
    report.notes.push(`${path}: encrypted and no ${path}.pub next to it; skipped (add it to ssh-agent)`);
    return undefined;
  }
  return { label: path, pub, blob: pub.getPublicSSH().toString("base64"), fromAgent: false, file: path, encrypted };
}

async function unlockKey(id: Identity, opts: KeychainOptions, cache: Map<string, ParsedKey>, report: AuthReport): Promise<ParsedKey | undefined> {
  const hit = cache.get(id.blob);
  if (hit) return hit;
  const text = readFileSync(id.file!, "utf8");
  if (!id.encrypted) {
    const k = first(parseKey(text));
    if (k instanceof Error) throw k;
    cache.set(id.blob, k);
    return k;
  }
  if (!opts.interactive || !opts.prompt) {
    report.acceptedButUnusable.push(id.file!);
    report.notes.push(`${id.file}: the server accepts this key but it is passphrase-protected and this run is not interactive`);
    return undefined;
  }
  // Three tries, like ssh's NumberOfPasswordPrompts.
  for (let i = 0; i < 3; i++) {
    const pass = await opts.prompt(`Enter passphrase for key '${id.file}':`, { secret: true });
    if (pass === "") break;
    const k = first(parseKey(text, pass));
    if (!(k instanceof Error)) {
      cache.set(id.blob, k);
      return k;
    }
    opts.log?.("Bad passphrase, try again.");
  }
  report.acceptedButUnusable.push(id.file!);
  report.notes.push(`${id.file}: no valid passphrase given`);
  return undefined;
}

/** openssh-key-v1 keeps the public key in clear text before the encrypted part (PROTOCOL.key). */
export function openSshPublicBlob(text: string): Buffer | undefined {
  const m = /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/.exec(text);
  if (!m) return undefined;
  const b = Buffer.from(m[1]!.replace(/\s+/g, ""), "base64");
  const magic = "openssh-key-v1\0";
  if (b.subarray(0, magic.length).toString("latin1") !== magic) return undefined;
  let p = magic.length;
  const str = () => {
    const len = b.readUInt32BE(p);
    const s = b.subarray(p + 4, p + 4 + len);
    p += 4 + len;
    return s;
  };
  str(); // cipher
  str(); // kdf
  str(); // kdf options
  const n = b.readUInt32BE(p);
  p += 4;
  return n >= 1 ? Buffer.from(str()) : undefined;
}

function blobType(blob: Buffer): string {
  return blob.subarray(4, 4 + blob.readUInt32BE(0)).toString("latin1");
}

function first<T>(v: T | T[]): T {
  return Array.isArray(v) ? v[0]! : v;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error(`no answer in ${ms / 1000}s`)), ms);
    p.then(
      (v) => (clearTimeout(t), res(v)),
      (e) => (clearTimeout(t), rej(e)),
    );
  });
}
