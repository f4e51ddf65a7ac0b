/**
 * Resolve what `ssh HOST` would use, like `ssh -G`: destination forms, ~/.ssh/config then
 * /etc/ssh/ssh_config, first value wins, Host patterns with negation, Include (which the
 * `ssh-config` package parses but does not follow: readconf.c semantics are reproduced here),
 * and %-tokens. Tested against `ssh -G` as the oracle.
 */
import { createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { homedir, hostname as osHostname, userInfo } from "node:os";
import { isAbsolute, join } from "node:path";
import SSHConfig from "ssh-config";
import { UserError } from "../errors.ts";
import { globMatch } from "./known-hosts.ts";

export interface SshDestination {
  user?: string;
  host: string;
  port?: number;
}

/**
 * Split a destination as typed: `host`, `user@host`, `host:port`, `user@host:port`, `[v6]:port`,
 * `ssh://user@host:port`. A bare IPv6 address (several colons) is all host, as for ssh.
 */
export function parseDestination(dest: string): SshDestination {
  let s = dest.trim();
  if (s === "") throw new UserError("Empty SSH destination.", "Give a host: `host`, `user@host`, `host:port` or a ~/.ssh/config alias.", 2);
  if (s.startsWith("ssh://")) s = s.slice(6).replace(/\/$/, "");
  let user: string | undefined;
  const at = s.lastIndexOf("@");
  if (at >= 0) {
    user = s.slice(0, at);
    s = s.slice(at + 1);
    if (user === "") throw new UserError(`Bad SSH destination "${dest}": empty user name.`, undefined, 2);
  }
  let host = s;
  let port: number | undefined;
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (bracket) {
    host = bracket[1]!;
    if (bracket[2]) port = Number(bracket[2]);
  } else if ((s.match(/:/g) ?? []).length === 1) {
    const i = s.indexOf(":");
    host = s.slice(0, i);
    const p = s.slice(i + 1);
    if (!/^\d+$/.test(p)) throw new UserError(`Bad SSH destination "${dest}": port "${p}" is not a number.`, undefined, 2);
    port = Number(p);
  }
  if (host === "") throw new UserError(`Bad SSH destination "${dest}": no host.`, undefined, 2);
  if (port !== undefined && (port < 1 || port > 65535)) throw new UserError(`Bad SSH destination "${dest}": port out of range.`, undefined, 2);
  return { user, host, port };
}

export type StrictHostKeyChecking = "yes" | "ask" | "accept-new" | "no";

export interface ResolvedSshHost {
  /** The host as typed (what Host patterns matched, %n). */
  alias: string;
  /** Where to connect (HostName, lowercased like ssh). */
  hostname: string;
  port: number;
  user: string;
  /** Identity files, ~ and %-tokens expanded; defaults included only when none was configured. */
  identityFiles: string[];
  /** True when identityFiles are ssh's defaults (missing ones are silently skipped, as ssh does). */
  identityFilesAreDefaults: boolean;
  identitiesOnly: boolean;
  /** IdentityAgent: a socket path, "none", or undefined for SSH_AUTH_SOCK. */
  identityAgent?: string;
  /** ProxyJump hops, outermost first ([] = direct). */
  proxyJump: string[];
  proxyCommand?: string;
  userKnownHostsFiles: string[];
  globalKnownHostsFiles: string[];
  strictHostKeyChecking: StrictHostKeyChecking;
  hashKnownHosts: boolean;
  hostKeyAlias?: string;
  connectTimeoutMs?: number;
  serverAliveIntervalS: number;
  serverAliveCountMax: number;
  batchMode: boolean;
  pubkeyAuthentication: boolean;
  passwordAuthentication: boolean;
  kbdInteractiveAuthentication: boolean;
  /** Ciphers as written (`aes128-ctr,...`, or `+`/`-`/`^` followed by a list): see resolveCiphers. */
  ciphers?: string;
  /** Config files that were read, in order (for messages). */
  configFiles: string[];
}

export interface ResolveSshOptions {
  /** Command-line values beat the config, as `-l`, `-p`, `-i`, `-J` do. */
  user?: string;
  port?: number;
  identityFile?: string;
  proxyJump?: string;
  /** Default ~/.ssh/config; null reads none (like `-F none`). */
  configFile?: string | null;
  /** Default /etc/ssh/ssh_config; null reads none. Skipped when configFile is given explicitly, as `ssh -F` does. */
  systemConfigFile?: string | null;
  /** Overrides UserKnownHostsFile (`-o UserKnownHostsFile=`). */
  knownHostsFile?: string;
  home?: string;
  localUser?: string;
  /** Told about config lines that are understood but not followed (Match exec, ...). */
  log?: (msg: string) => void;
}

/** Options whose every occurrence adds to a list instead of first-wins. */
const CUMULATIVE = new Set(["identityfile", "certificatefile", "localforward", "remoteforward", "dynamicforward", "sendenv"]);

type Value = string | { val: string; separator?: string; quoted?: boolean }[];
interface Line {
  type: number;
  param?: string;
  value?: Value;
  config?: Line[];
  criteria?: Record<string, string | string[]>;
}

const vals = (v: Value | undefined): string[] => (v === undefined ? [] : typeof v === "string" ? [v] : v.map((x) => x.val));

/** A command line as written: the parser splits words at "=" too, so rebuild with its separators. */
function commandText(v: Value | undefined): string {
  if (v === undefined) return "";
  if (typeof v === "string") return v;
  return v.map(({ val, separator, quoted }) => `${separator ?? " "}${quoted ? `"${val.replaceAll('"', '\\"')}"` : val}`).join("").trim();
}

interface Ctx {
  host: string; // as typed (Host matching)
  originalHost: string;
  opts: Map<string, string[]>;
  localUser: string;
  home: string;
  userConfig: boolean;
  depth: number;
  log: (m: string) => void;
  files: string[];
  // Host/Match criteria use the user and hostname known so far.
  cliUser?: string;
}

function setOpt(ctx: Ctx, key: string, values: string[]): void {
  if (values.length === 0) return;
  if (CUMULATIVE.has(key)) {
    ctx.opts.set(key, [...(ctx.opts.get(key) ?? []), ...values]);
    return;
  }
  // ProxyJump and ProxyCommand exclude each other: whichever comes first wins (readconf.c).
  if ((key === "proxyjump" || key === "proxycommand") && (ctx.opts.has("proxyjump") || ctx.opts.has("proxycommand"))) return;
  if (!ctx.opts.has(key)) ctx.opts.set(key, values);
}

function hostMatches(patterns: string[], host: string): boolean {
  let matched = false;
  for (const p of patterns) {
    if (p.startsWith("!")) {
      if (globMatch(p.slice(1), host)) return false;
    } else if (globMatch(p, host)) matched = true;
  }
  return matched;
}

function listMatches(list: string, text: string, lower = false): boolean {
  const pats = list.split(",").map((p) => (lower ? p.toLowerCase() : p));
  return hostMatches(pats, lower ? text.toLowerCase() : text);
}

function matchCriteria(line: Line, ctx: Ctx): boolean {
  const words = vals(line.value);
  let i = 0;
  while (i < words.length) {
    let kw = words[i++]!.toLowerCase();
    const negate = kw.startsWith("!");
    if (negate) kw = kw.slice(1);
    let ok: boolean;
    if (kw === "all") ok = true;
    else if (kw === "canonical" || kw === "final") ok = false; // no canonicalisation pass here
    else {
      const arg = words[i++];
      if (arg === undefined) throw new UserError(`ssh config: Match ${kw} needs an argument.`);
      const hostname = (ctx.opts.get("hostname")?.[0] ?? ctx.host).replaceAll("%h", ctx.host).toLowerCase();
      const user = ctx.cliUser ?? ctx.opts.get("user")?.[0] ?? ctx.localUser;
      switch (kw) {
        case "host":
          ok = listMatches(arg, hostname, true);
          break;
        case "originalhost":
          ok = listMatches(arg, ctx.originalHost, true);
          break;
        case "user":
          ok = listMatches(arg, user);
          break;
        case "localuser":
          ok = listMatches(arg, ctx.localUser);
          break;
        default:
          // exec, localnetwork, tagged...: not evaluated (never runs commands from config).
          ctx.log(`ssh config: "Match ${kw}" is not supported here; treating it as not matching.`);
          ok = false;
      }
    }
    if (negate ? ok : !ok) return false;
  }
  return true;
}

function readConfigFile(path: string, ctx: Ctx, active: boolean, neverMatch: boolean, required: boolean): void {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    if (required) throw new UserError(`Cannot read SSH config ${path}: ${(e as Error).message}`);
    return;
  }
  ctx.files.push(path);
  let lines: Line[];
  try {
    lines = SSHConfig.parse(text) as unknown as Line[];
  } catch (e) {
    throw new UserError(`Cannot parse SSH config ${path}: ${(e as Error).message}`, "Check it with `ssh -G HOST`.");
  }
  processLines(lines, ctx, active, neverMatch);
}

/** readconf.c: Host/Match lines switch `active`; options apply only while active. */
function processLines(lines: Line[], ctx: Ctx, active: boolean, neverMatch: boolean): boolean {
  for (const line of lines) {
    if (line.type !== SSHConfig.DIRECTIVE || !line.param) continue;
    const key = line.param.toLowerCase();
    if (key === "host") {
      active = !neverMatch && hostMatches(vals(line.value), ctx.host);
      processLines(line.config ?? [], ctx, active, neverMatch);
      continue;
    }
    if (key === "match") {
      active = !neverMatch && matchCriteria(line, ctx);
      processLines(line.config ?? [], ctx, active, neverMatch);
      continue;
    }
    if (key === "include") {
      if (ctx.depth >= 16) throw new UserError("ssh config: Include nested too deeply (a loop?).");
      for (const pattern of vals(line.value)) {
        let p = expandTilde(pattern, ctx.home);
        if (!isAbsolute(p)) p = ctx.userConfig ? join(ctx.home, ".ssh", p) : join("/etc/ssh", p);
        // Included files are read even from an inactive block, but nothing in them can match then.
        const matches = globFiles(p);
        ctx.depth++;
        for (const f of matches) readConfigFile(f, ctx, active, neverMatch || !active, true);
        ctx.depth--;
      }
      continue;
    }
    if (!active) continue;
    if (key === "proxycommand") setOpt(ctx, key, [commandText(line.value)]);
    else setOpt(ctx, key, vals(line.value));
  }
  return active;
}

/** Files matching an absolute glob, sorted like glob(3); a plain path that is missing matches nothing. */
function globFiles(pattern: string): string[] {
  const parts = pattern.split("/");
  const firstGlob = parts.findIndex((seg) => /[*?[]/.test(seg));
  if (firstGlob < 0) return isFile(pattern) ? [pattern] : [];
  const base = parts.slice(0, firstGlob).join("/") || "/";
  const rest = parts.slice(firstGlob).join("/");
  try {
    return [...new Bun.Glob(rest).scanSync({ cwd: base, onlyFiles: true, dot: false })].map((f) => join(base, f)).sort();
  } catch {
    return [];
  }
}

function expandTilde(p: string, home: string): string {
  if (p === "~") return home;
  if (p.startsWith("~/")) return join(home, p.slice(2));
  return p;
}

/** ssh's percent_expand for the tokens readconf allows in paths. */
export function expandTokens(s: string, t: Record<string, string>): string {
  return s.replace(/%(.)/g, (m, c: string) => {
    if (c === "%") return "%";
    const v = t[c];
    if (v === undefined) throw new UserError(`ssh config: unknown token %${c} in "${s}".`);
    return v;
  });
}

const YES = new Set(["yes", "true"]);
const flag = (v: string | undefined, dflt: boolean) => (v === undefined ? dflt : YES.has(v.toLowerCase()));

export function resolveSshHost(destination: string, opts: ResolveSshOptions = {}): ResolvedSshHost {
  const dest = parseDestination(destination);
  const home = opts.home ?? homedir();
  const localUser = opts.localUser ?? safeUserName();
  const cliUser = opts.user ?? dest.user;
  const ctx: Ctx = {
    host: dest.host,
    originalHost: dest.host,
    opts: new Map(),
    localUser,
    home,
    userConfig: true,
    depth: 0,
    log: opts.log ?? (() => {}),
    files: [],
    cliUser,
  };
  if (opts.identityFile) setOpt(ctx, "identityfile", [opts.identityFile]);
  if (opts.proxyJump) setOpt(ctx, "proxyjump", [opts.proxyJump]);
  if (opts.knownHostsFile) setOpt(ctx, "userknownhostsfile", [opts.knownHostsFile]);
  const explicitConfig = opts.configFile !== undefined;
  const userConfig = opts.configFile === undefined ? join(home, ".ssh", "config") : opts.configFile;
  if (userConfig !== null) readConfigFile(userConfig, ctx, true, false, explicitConfig);
  // `ssh -F file` skips the system file; so does an explicit configFile here unless one is named too.
  const systemConfig = opts.systemConfigFile !== undefined ? opts.systemConfigFile : explicitConfig ? null : "/etc/ssh/ssh_config";
  if (systemConfig !== null) {
    ctx.userConfig = false;
    readConfigFile(systemConfig, ctx, true, false, opts.systemConfigFile !== undefined);
  }

  const o = (k: string) => ctx.opts.get(k)?.[0];
  const lowerHost = dest.host.toLowerCase();
  const hostname = expandTokens(o("hostname") ?? lowerHost, { h: lowerHost }).toLowerCase();
  const portText = dest.port ?? opts.port ?? o("port");
  const port = portText === undefined ? 22 : Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UserError(`ssh config: bad Port "${portText}" for ${dest.host}.`);
  const user = cliUser ?? o("user") ?? localUser;
  const localHost = safeHostname();
  const tokens: Record<string, string> = {
    d: home,
    u: localUser,
    h: hostname,
    r: user,
    p: String(port),
    n: dest.host,
    l: localHost,
    L: localHost.split(".")[0]!,
    i: String(process.getuid?.() ?? ""),
    k: o("hostkeyalias") ?? dest.host,
    C: createHash("sha1").update(`${localHost}${hostname}${port}${user}`).digest("hex"),
  };
  const pathOf = (p: string) => expandTilde(expandTokens(p, tokens), home);

  const configured = ctx.opts.get("identityfile") ?? [];
  const identityFilesAreDefaults = configured.length === 0;
  // OpenSSH's default list, less the kinds ssh2 cannot use (security keys, XMSS, DSA).
  const identityFiles = (identityFilesAreDefaults ? ["~/.ssh/id_rsa", "~/.ssh/id_ecdsa", "~/.ssh/id_ed25519"] : configured).map(pathOf);

  const pj = o("proxyjump");
  const proxyJump = pj === undefined || pj.toLowerCase() === "none" ? [] : pj.split(",").map((s) => s.trim()).filter(Boolean);
  const pcRaw = ctx.opts.get("proxycommand");
  const proxyCommand = pcRaw && pcRaw.join(" ").toLowerCase() !== "none" ? pcRaw.join(" ") : undefined;

  const shk = (o("stricthostkeychecking") ?? "ask").toLowerCase();
  const strictHostKeyChecking: StrictHostKeyChecking =
    shk === "yes" || shk === "true" ? "yes" : shk === "accept-new" ? "accept-new" : shk === "no" || shk === "off" || shk === "false" ? "no" : "ask";

  const ct = o("connecttimeout");
  const agent = o("identityagent");
  return {
    alias: dest.host,
    hostname,
    port,
    user,
    identityFiles,
    identityFilesAreDefaults,
    identitiesOnly: flag(o("identitiesonly"), false),
    identityAgent: resolveAgent(agent, pathOf),
    proxyJump,
    proxyCommand,
    userKnownHostsFiles: (ctx.opts.get("userknownhostsfile") ?? ["~/.ssh/known_hosts", "~/.ssh/known_hosts2"]).filter((f) => f !== "none").map(pathOf),
    globalKnownHostsFiles: (ctx.opts.get("globalknownhostsfile") ?? ["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"]).filter((f) => f !== "none").map(pathOf),
    strictHostKeyChecking,
    hashKnownHosts: flag(o("hashknownhosts"), false),
    hostKeyAlias: o("hostkeyalias"),
    connectTimeoutMs: ct === undefined || ct === "none" ? undefined : Number(ct) * 1000,
    serverAliveIntervalS: Number(o("serveraliveinterval") ?? 0),
    serverAliveCountMax: Number(o("serveralivecountmax") ?? 3),
    batchMode: flag(o("batchmode"), false),
    pubkeyAuthentication: flag(o("pubkeyauthentication"), true),
    passwordAuthentication: flag(o("passwordauthentication"), true),
    kbdInteractiveAuthentication: flag(o("kbdinteractiveauthentication") ?? o("challengeresponseauthentication"), true),
    ciphers: o("ciphers"),
    configFiles: ctx.files,
  };
}

/**
 * The cipher list for a Ciphers value, as ssh_config(5) reads it: a plain list replaces the
 * defaults, `+list` appends to them, `^list` puts those first, `-list` removes from them (only
 * there may `*` and `?` patterns stand, as in ssh). Ciphers this client lacks are dropped, so the
 * result may be [].
 */
export function resolveCiphers(spec: string | undefined, defaults: readonly string[], supported: readonly string[]): string[] {
  if (spec === undefined || spec.trim() === "") return [...defaults];
  const op = /^[+\-^]/.test(spec) ? spec[0] : "";
  const items = spec.slice(op.length).split(",").map((x) => x.trim()).filter(Boolean);
  let list: string[];
  if (op === "+") list = [...defaults, ...items];
  else if (op === "^") list = [...items, ...defaults];
  else if (op === "-") {
    const drop = items.map((p) => new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`));
    list = defaults.filter((c) => !drop.some((re) => re.test(c)));
  } else list = items;
  return [...new Set(list)].filter((c) => supported.includes(c));
}

/** IdentityAgent: "none", SSH_AUTH_SOCK (the default), $VAR, or a path with tokens. */
function resolveAgent(v: string | undefined, pathOf: (p: string) => string): string | undefined {
  if (v === undefined || v === "SSH_AUTH_SOCK") return undefined;
  if (v === "none") return "none";
  if (v.startsWith("$")) return process.env[v.slice(1)] ?? "none";
  return pathOf(v);
}

/** The local user name as ssh gets it (getpwuid). Bun's os.userInfo() answers "unknown" here. */
function safeUserName(): string {
  const uid = process.getuid?.();
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const f = line.split(":");
      if (f.length > 2 && Number(f[2]) === uid) return f[0]!;
    }
  } catch {}
  try {
    const u = userInfo().username;
    if (u && u !== "unknown") return u;
  } catch {}
  return process.env.USER ?? process.env.LOGNAME ?? "root";
}

function safeHostname(): string {
  try {
    return osHostname();
  } catch {
    return "localhost";
  }
}

/** Exists and is a regular file (identity files that are missing are skipped, as ssh does). */
export function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}
