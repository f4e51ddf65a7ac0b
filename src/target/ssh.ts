/**
 * The SSH adapter: ssh2 made to behave like OpenSSH's `ssh` (ssh2 by itself reads no ~/.ssh, no
 * agent, and accepts any host key: FIELD-NOTES §3). Config like `ssh -G` (ssh-config.ts), keys and
 * agent like ssh (ssh-auth.ts), strict host-key checking against known_hosts (known-hosts.ts).
 */
import { spawn as spawnChild } from "node:child_process";
import { connect as netConnect, Socket } from "node:net";
import { Duplex, type Readable } from "node:stream";
import ssh2 from "./_ssh2.ts";
import type { ClientChannel, ConnectConfig } from "ssh2";
import { UserError } from "../errors.ts";
import { shellJoin } from "../util/shell.ts";
import { execVia } from "./_exec.ts";
import { putVia } from "./_put.ts";
import { explainSudoFailure } from "./_sudo.ts";
import { addKnownHost, checkHostKey, fingerprint, keyBlobType, knownKeyTypes, replaceKnownHost, type KnownHostEntry } from "./known-hosts.ts";
import { loadKeychain, type AuthReport, type Prompt } from "./ssh-auth.ts";
import { expandTokens, resolveCiphers, resolveSshHost, type ResolvedSshHost } from "./ssh-config.ts";
import type { ExecOptions, ExecResult, RemoteProcess, SpawnOptions, Target } from "./types.ts";

const { Client } = ssh2;
type SshClient = InstanceType<typeof Client>;

export interface HostKeyChange {
  /** The name the key is filed under (`host` or `[host]:port`). */
  name: string;
  host: string;
  port: number;
  /** The known_hosts line that holds the old key. */
  entry: KnownHostEntry;
  /** The key the server presented now. */
  key: Buffer;
  fingerprint: string;
  /** Where replaceKnownHost would write (first UserKnownHostsFile). */
  knownHostsFile: string;
}

export interface SshConnectOptions {
  /** As typed: "host", "user@host", "host:port", "user@host:port", "[::1]:22", "ssh://...", or a ~/.ssh/config alias. */
  destination: string;
  port?: number;
  user?: string;
  identityFile?: string;
  /** Like `ssh -J`. */
  proxyJump?: string;
  /** Default ~/.ssh/config (then /etc/ssh/ssh_config). */
  sshConfigFile?: string;
  /** Default /etc/ssh/ssh_config when sshConfigFile is not given; null skips it. */
  systemSshConfigFile?: string | null;
  /** Replaces UserKnownHostsFile (default ~/.ssh/known_hosts); global files are read too. */
  knownHostsFile?: string;
  /** File an unknown host key without asking (ssh -o StrictHostKeyChecking=accept-new). Never accepts a changed key. */
  acceptNewHostKey?: boolean;
  interactive: boolean;
  prompt?: Prompt;
  /** TCP connect timeout (default: ConnectTimeout from the config, else 20 s). */
  connectTimeoutMs?: number;
  /** Handshake + authentication limit, not counting time spent in prompts (default 60 s). */
  handshakeTimeoutMs?: number;
  /**
   * A direct TCP connection on which the server has sent nothing (not even its version line) this
   * long after it opened fails with NoAnswerError (default: no such limit). For polling a board
   * that reboots; a server sends its version line as soon as it accepts.
   */
  bannerTimeoutMs?: number;
  /** Keepalive: interval (default ServerAliveInterval or 15 s) and missed answers before the link counts as dead (default ServerAliveCountMax or 4). */
  keepaliveIntervalMs?: number;
  keepaliveCountMax?: number;
  /** Ciphers to offer, best first; beats Ciphers in the SSH config (default: DEFAULT_CIPHERS). */
  ciphers?: string[];
  /**
   * Called when the host key differs from known_hosts. Return true to replace the old entry
   * (e.g. the board was just re-flashed and the caller expects a new key). Default: refuse.
   */
  onHostKeyChanged?: (change: HostKeyChange) => Promise<boolean> | boolean;
  log?: (msg: string) => void;
}

export class HostKeyError extends UserError {
  override name = "HostKeyError";
  constructor(
    message: string,
    hint: string,
    public readonly kind: "unknown" | "changed" | "revoked",
    public readonly host: string,
    public readonly port: number,
    public readonly key: Buffer,
  ) {
    super(message, hint);
  }
}

/** The server answered, but refused every way we had to log in. */
export class AuthError extends UserError {
  override name = "AuthError";
}

/**
 * Nothing answered in time: the TCP connect timed out, or the connection opened but no byte came
 * back within bannerTimeoutMs (QEMU's user network, Docker's port forwarding and other NATs accept
 * for a board that is still booting, then hold the connection while their own SYNs to it back off).
 */
export class NoAnswerError extends UserError {
  override name = "NoAnswerError";
}

export interface SshTarget extends Target {
  readonly kind: "ssh";
  /** How this session authenticated (publickey, keyboard-interactive, password). */
  readonly authMethod: string;
  /** The cipher of this side's traffic (the image's bytes), e.g. aes128-gcm@openssh.com. */
  readonly cipher: string;
  readonly resolved: ResolvedSshHost;
  /** Resolves when the connection is gone (closed, dropped, keepalive timeout). */
  readonly closed: Promise<void>;
}

/**
 * chacha20-poly1305 first, as OpenSSH's own client offers: the cheapest for the board to decrypt
 * when it has no AES instructions (Raspberry Pi 4 and older; these TCG boards: 10.9 vs 8.0 MiB/s
 * with aes128-gcm, `bun bench/link.ts`), and the board's CPU is also the one that decompresses.
 * On this side it is JS (_chacha20.ts, ~140 MiB/s on one core here, `--loopback`), still faster than
 * gigabit Ethernet, and the wire mostly carries compressed bytes. A fast link to an AES-capable
 * board wants `Ciphers ^aes128-gcm@openssh.com` (ssh2 reaches ~490 MiB/s with it here).
 */
const DEFAULT_CIPHERS = ["chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr"];
/** What ssh2 speaks under Bun with the chacha20 shim (CBC left out, as OpenSSH's defaults do). */
const SUPPORTED_CIPHERS = DEFAULT_CIPHERS;
const HOST_KEY_ALGOS = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"];

export async function connectSsh(opts: SshConnectOptions): Promise<SshTarget> {
  const log = opts.log ?? (() => {});
  const resolveHost = (dest: string, extra: { user?: string; port?: number; identityFile?: string; proxyJump?: string } = {}) =>
    resolveSshHost(dest, {
      ...extra,
      configFile: opts.sshConfigFile,
      systemConfigFile: opts.systemSshConfigFile,
      knownHostsFile: opts.knownHostsFile,
      log,
    });
  const r = resolveHost(opts.destination, { user: opts.user, port: opts.port, identityFile: opts.identityFile, proxyJump: opts.proxyJump });
  const chain: SshClient[] = [];
  try {
    const client = await openChain(r, opts, resolveHost, chain, 0);
    return createSshTarget(client, chain, r, log);
  } catch (e) {
    for (const c of chain.reverse()) c.end();
    throw e;
  }
}

type ResolveFn = (dest: string) => ResolvedSshHost;

/** Connect to r, through its ProxyJump hops or ProxyCommand; every client opened is pushed to chain. */
async function openChain(r: ResolvedSshHost, opts: SshConnectOptions, resolve: ResolveFn, chain: SshClient[], depth: number): Promise<SshClient> {
  if (depth > 8) throw new UserError(`ProxyJump loop while connecting to ${r.alias}.`, "Check the ProxyJump lines in your SSH config.");
  let sock: Duplex;
  if (r.proxyJump.length > 0) {
    // As ssh does (-J a,b,c): the first hop is resolved fully (its own ProxyJump applies), each
    // later hop is reached through the previous one, and the target through the last.
    let prev = await openChain(resolve(r.proxyJump[0]!), opts, resolve, chain, depth + 1);
    for (const hop of r.proxyJump.slice(1)) {
      const hr = { ...resolve(hop), proxyJump: [], proxyCommand: undefined };
      prev = await handshake(hr, await forwardOut(prev, hr), opts, chain);
    }
    sock = await forwardOut(prev, r);
  } else if (r.proxyCommand) {
    sock = proxyCommandSocket(r, opts.log);
  } else {
    sock = await tcpConnect(r, opts.connectTimeoutMs ?? r.connectTimeoutMs ?? 20_000);
  }
  return await handshake(r, sock, opts, chain);
}

function forwardOut(via: SshClient, to: ResolvedSshHost): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    via.forwardOut("127.0.0.1", 0, to.hostname, to.port, (err, stream) => {
      if (err) reject(new UserError(`Cannot reach ${to.hostname}:${to.port} through the jump host: ${err.message}`, "Check that `ssh -J ...` works with the same hosts."));
      else {
        // Also a correctness fix: unbuffered, a write of the inner connection runs the outer one's
        // encryption synchronously, in the middle of ssh2's JS chacha20-poly1305 encrypt, which keeps
        // its nonce in a module-wide buffer; chacha20 inside chacha20 then sent garbage and hung.
        coalesceWrites(stream);
        resolve(stream);
      }
    });
  });
}

function tcpConnect(r: ResolvedSshHost, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = netConnect({ host: r.hostname, port: r.port });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new NoAnswerError(`Connection to ${r.hostname} port ${r.port} timed out after ${timeoutMs / 1000} s.`, "Is the board on and reachable? Check the address and port."));
    }, timeoutMs);
    sock.once("connect", () => {
      clearTimeout(timer);
      coalesceWrites(sock);
      // No setNoDelay: ssh2 writes each 32 KiB packet separately, and with Nagle off under Bun
      // that halved bulk throughput (measured 280 vs 520 MB/s into `cat >/dev/null`).
      resolve(sock);
    });
    sock.once("error", (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(connectError(r, e));
    });
  });
}

/** A failed TCP connect in words: what the error code means for a board, and what to check. */
export function connectError(r: Pick<ResolvedSshHost, "hostname" | "port">, e: NodeJS.ErrnoException): UserError {
  const where = `${r.hostname} port ${r.port}`;
  const check = "Check the address and the port (`ssh -G HOST` shows what ~/.ssh/config makes of them).";
  switch (e.code) {
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return new UserError(`Cannot connect to ${where}: the name ${r.hostname} does not resolve (${e.code}).`, "Check the spelling, or use the board's IP address (`ssh -G HOST` shows what ~/.ssh/config makes of the name).");
    case "ECONNREFUSED":
      return new UserError(`Cannot connect to ${where}: connection refused (${e.code}): the host answers, but nothing listens on that port.`, `Is sshd running on the board, and on this port? ${check}`);
    case "EHOSTUNREACH":
    case "ENETUNREACH":
    case "EHOSTDOWN":
      return new UserError(`Cannot connect to ${where}: no route to the host (${e.code}).`, `Is the board on, and on this network? ${check}`);
    default:
      return new UserError(`Cannot connect to ${where}: ${e.code ?? e.message}.`, `Is the board on and reachable? ${check}`);
  }
}

/**
 * ssh2 writes every packet as three socket writes (length, ciphertext, MAC), and under Bun each
 * write is a separate send: 45% of the CPU time of a bulk transfer (bun --cpu-prof, 1 GiB into a
 * loopback sshd). Corking the stream for the rest of the tick sends what ssh2 wrote in one go:
 * 355 -> 490 MiB/s there with aes128-gcm (`bun bench/link.ts --loopback`).
 */
function coalesceWrites(sock: Duplex): void {
  const write = sock.write;
  let corked = false;
  sock.write = function (this: Duplex, ...args: Parameters<Duplex["write"]>) {
    if (!corked) {
      corked = true;
      sock.cork();
      process.nextTick(() => {
        corked = false;
        sock.uncork();
      });
    }
    return write.apply(this, args);
  } as Duplex["write"];
}

function proxyCommandSocket(r: ResolvedSshHost, log?: (m: string) => void): Duplex {
  const cmd = expandTokens(r.proxyCommand!, { h: r.hostname, p: String(r.port), r: r.user, n: r.alias });
  const child = spawnChild("/bin/sh", ["-c", `exec ${cmd}`], { stdio: ["pipe", "pipe", "pipe"] });
  child.stderr!.on("data", (c: Buffer) => log?.(`ProxyCommand: ${c.toString("utf8").trimEnd()}`));
  const d = Duplex.from({ readable: child.stdout!, writable: child.stdin! });
  d.on("close", () => child.kill());
  return d;
}

/** SSH handshake, host-key check and authentication on an open socket. */
/** The method of each client's last auth attempt: after "ready", the one that worked (shown by `check`). */
const AUTH_METHOD = new WeakMap<SshClient, string>();
/** The cipher each client negotiated for what it sends (ssh2's "handshake" event). */
const CIPHER = new WeakMap<SshClient, string>();

async function handshake(r: ResolvedSshHost, sock: Duplex, opts: SshConnectOptions, chain: SshClient[]): Promise<SshClient> {
  const log = opts.log ?? (() => {});
  const interactive = opts.interactive && !r.batchMode && !!opts.prompt;
  const label = `${r.user}@${r.hostname}${r.port === 22 ? "" : `:${r.port}`}`;
  const files = [...r.userKnownHostsFiles, ...r.globalKnownHostsFiles];
  const writeFile = r.userKnownHostsFiles[0];
  // StrictHostKeyChecking=no is treated as accept-new: a changed key is never accepted.
  const acceptNew = opts.acceptNewHostKey === true || r.strictHostKeyChecking === "accept-new" || r.strictHostKeyChecking === "no";

  // Prompts stop the handshake clock (a user reading a fingerprint is not a dead link).
  let promptDepth = 0;
  const paused = async <T>(fn: () => Promise<T> | T): Promise<T> => {
    promptDepth++;
    try {
      return await fn();
    } finally {
      promptDepth--;
    }
  };
  const ask = (q: string, secret: boolean) => paused(() => opts.prompt!(q, { secret }));

  const keychain = r.pubkeyAuthentication
    ? await loadKeychain({
        agentSocket: r.identityAgent === "none" ? undefined : (r.identityAgent ?? process.env.SSH_AUTH_SOCK) || undefined,
        identityFiles: r.identityFiles,
        identityFilesAreDefaults: r.identityFilesAreDefaults,
        identitiesOnly: r.identitiesOnly,
        interactive,
        prompt: interactive ? (q, o) => ask(q, o.secret) : undefined,
        log,
      })
    : undefined;

  let hostKeyError: Error | undefined;
  let trusted: Buffer | undefined;
  const hostVerifier = (key: Buffer, verify: (ok: boolean) => void) => {
    // A rekey (OpenSSH's RekeyLimit: after 1 GiB with chacha20) asks again. Answer at once: ssh2
    // answered from a later microtask mid-rekey sends packets under the wrong keys and sshd drops
    // the connection ("Bad packet length"; node 20 and Bun alike). The key must be the same one.
    if (trusted) return verify(key.equals(trusted));
    verifyHostKey(key).then(
      (ok) => {
        if (ok) trusted = Buffer.from(key);
        verify(ok);
      },
      (e: Error) => {
        hostKeyError = e;
        verify(false);
      },
    );
  };
  const verifyHostKey = async (key: Buffer): Promise<boolean> => {
    const q = { host: r.hostname, port: r.port, key, files, alias: r.hostKeyAlias };
    const res = checkHostKey(q);
    const fp = fingerprint(key);
    const type = keyBlobType(key);
    const where = r.port === 22 ? r.hostname : `[${r.hostname}]:${r.port}`;
    if (res.status === "known") return true;
    if (res.status === "revoked") {
      throw new HostKeyError(
        `The ${type} host key of ${where} (${fp}) is marked @revoked in ${res.entry.file}:${res.entry.line}. Refusing to connect.`,
        "A revoked key means the board's identity is not trusted; ask whoever manages it.",
        "revoked", r.hostname, r.port, key,
      );
    }
    if (res.status === "changed") {
      const change: HostKeyChange = { name: res.name, host: r.hostname, port: r.port, entry: res.entry, key, fingerprint: fp, knownHostsFile: writeFile ?? res.entry.file };
      if (opts.onHostKeyChanged && (await paused(() => opts.onHostKeyChanged!(change)))) {
        replaceKnownHost(change.knownHostsFile, { host: r.hostname, port: r.port, key, hash: r.hashKnownHosts, alias: r.hostKeyAlias });
        log(`Replaced the host key of ${where} in ${change.knownHostsFile} (${type} ${fp}).`);
        return true;
      }
      const rm = r.port === 22 ? r.hostname : `'[${r.hostname}]:${r.port}'`;
      throw new HostKeyError(
        `HOST KEY CHANGED for ${where}: it now presents ${type} ${fp}, but ${res.entry.file}:${res.entry.line} holds a different key. ` +
          "Someone could be intercepting the connection, or the board was re-installed. Refusing to connect.",
        `If the board was re-installed, remove the old key with \`ssh-keygen -R ${rm} -f ${res.entry.file}\` and connect again.`,
        "changed", r.hostname, r.port, key,
      );
    }
    const others = res.otherKeys.length ? ` (${res.otherKeys.length} key(s) of other types are known for it: ${res.otherKeys.map((e) => `${e.type} in ${e.file}:${e.line}`).join(", ")})` : "";
    const add = () => {
      if (!writeFile) return;
      addKnownHost(writeFile, { host: r.hostname, port: r.port, key, hash: r.hashKnownHosts, alias: r.hostKeyAlias });
      log(`Permanently added '${where}' (${type}) to the list of known hosts (${writeFile}).`);
    };
    if (acceptNew) {
      add();
      return true;
    }
    if (interactive && r.strictHostKeyChecking !== "yes") {
      let answer = await ask(
        `The authenticity of host '${where}' can't be established${others}.\n${type} key fingerprint is ${fp}.\nAre you sure you want to continue connecting (yes/no/[fingerprint])?`,
        false,
      );
      for (;;) {
        const a = answer.trim();
        if (a === "yes" || a === fp) {
          add();
          return true;
        }
        if (a === "no") break;
        answer = await ask("Please type 'yes', 'no' or the fingerprint:", false);
      }
      throw new HostKeyError(`Host key verification failed for ${where}: not accepted.`, "Check the fingerprint on the board with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`.", "unknown", r.hostname, r.port, key);
    }
    throw new HostKeyError(
      `The host key of ${where} is not known (${type} ${fp})${others}, and this run cannot ask.`,
      r.strictHostKeyChecking === "yes"
        ? "StrictHostKeyChecking is yes: add the key to known_hosts first (connect once with `ssh`), or pass --accept-new-host-key."
        : "Connect once with `ssh` to check and accept the key, or pass --accept-new-host-key to accept a new (never a changed) key.",
      "unknown", r.hostname, r.port, key,
    );
  };

  // The server should present a key type we already know for this host (ssh orders its
  // HostKeyAlgorithms the same way), else a known host would look "unknown".
  const known = knownKeyTypes(r.hostname, r.port, files, r.hostKeyAlias);
  const algoFor = (t: string) => (t === "ssh-rsa" ? ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] : [t]);
  const preferred = known.flatMap(algoFor).filter((a) => HOST_KEY_ALGOS.includes(a));
  const serverHostKey = [...preferred, ...HOST_KEY_ALGOS.filter((a) => !preferred.includes(a))];

  // Methods in ssh's order: publickey (agent + files), keyboard-interactive, password.
  const methods: string[] = [];
  if (keychain && keychain.count > 0) methods.push("publickey");
  if (interactive && r.kbdInteractiveAuthentication) methods.push("keyboard-interactive", "keyboard-interactive", "keyboard-interactive");
  if (interactive && r.passwordAuthentication) methods.push("password", "password", "password");
  let serverMethods: string[] | null = null;
  let step = -1;
  const authHandler = (methodsLeft: string[] | null, _partial: boolean | null, next: (m: unknown) => void) => {
    if (methodsLeft) serverMethods = methodsLeft;
    if (step === -1) {
      step = 0;
      return next({ type: "none", username: r.user });
    }
    while (step < methods.length) {
      const m = methods[step++]!;
      if (serverMethods && !serverMethods.includes(m)) continue;
      AUTH_METHOD.set(client, m === "publickey" ? (process.env.SSH_AUTH_SOCK ? "publickey (agent or key file)" : "publickey (key file)") : m);
      if (m === "publickey") return next({ type: "agent", username: r.user, agent: keychain!.agent });
      if (m === "keyboard-interactive") {
        return next({
          type: "keyboard-interactive",
          username: r.user,
          prompt: (_n: string, instructions: string, _l: string, prompts: { prompt: string; echo: boolean }[], finish: (a: string[]) => void) => {
            (async () => {
              if (instructions) log(instructions);
              const answers: string[] = [];
              for (const p of prompts) answers.push(await ask(`(${label}) ${p.prompt.trim()}`, !p.echo));
              finish(answers);
            })().catch(() => finish([]));
          },
        });
      }
      if (m === "password") {
        ask(`${label}'s password:`, true).then(
          (password) => next({ type: "password", username: r.user, password }),
          () => next(false),
        );
        return undefined;
      }
    }
    return next(false);
  };

  const ciphers = opts.ciphers ?? resolveCiphers(r.ciphers, DEFAULT_CIPHERS, SUPPORTED_CIPHERS);
  if (ciphers.length === 0) {
    sock.destroy();
    throw new UserError(
      `"Ciphers ${r.ciphers}" (${r.configFiles.join(", ") || "ssh config"}) leaves no cipher flash-live can use for ${label}.`,
      `flash-live speaks ${SUPPORTED_CIPHERS.join(", ")}; name one of them in Ciphers for this host.`,
    );
  }

  const client = new Client();
  chain.push(client);
  const keepaliveInterval = opts.keepaliveIntervalMs ?? (r.serverAliveIntervalS > 0 ? r.serverAliveIntervalS * 1000 : 15_000);
  const keepaliveCountMax = opts.keepaliveCountMax ?? (r.serverAliveIntervalS > 0 ? r.serverAliveCountMax : 4);
  const config: ConnectConfig = {
    sock: sock as unknown as ConnectConfig["sock"],
    username: r.user,
    hostVerifier: hostVerifier as ConnectConfig["hostVerifier"],
    authHandler: authHandler as unknown as ConnectConfig["authHandler"],
    // Our own clock below pauses during prompts; ssh2's readyTimeout cannot.
    readyTimeout: 0,
    keepaliveInterval,
    keepaliveCountMax,
    algorithms: { cipher: ciphers as never, serverHostKey: serverHostKey as never },
  };

  const limit = opts.handshakeTimeoutMs ?? 60_000;
  // Only a socket of our own counts its bytes (a jump host's channel or a ProxyCommand does not).
  const silentLimit = sock instanceof Socket ? opts.bannerTimeoutMs : undefined;
  const opened = performance.now();
  await new Promise<void>((resolve, reject) => {
    let waited = 0;
    const clock = setInterval(() => {
      if (promptDepth === 0) waited += 250;
      if (waited >= limit) fail(new UserError(`SSH handshake with ${label} did not finish in ${limit / 1000} s.`, "Is this an SSH server? Check `ssh -v HOST`."));
      else if (silentLimit !== undefined && (sock as Socket).bytesRead === 0 && performance.now() - opened >= silentLimit) {
        fail(new NoAnswerError(`${label} accepted the connection but sent nothing in ${silentLimit / 1000} s.`, "Is the board still booting? Is this port an SSH server?"));
      }
    }, 250);
    const fail = (e: Error) => {
      clearInterval(clock);
      client.removeListener("ready", onReady);
      client.end();
      sock.destroy();
      reject(e);
    };
    const onReady = () => {
      clearInterval(clock);
      client.removeListener("error", onError);
      client.removeListener("close", onClose);
      resolve();
    };
    const onError = (e: Error & { level?: string }) => {
      if (e.level === "agent") {
        // A key the server accepted could not sign (no passphrase): ssh2 goes on with the next one.
        log(`SSH: ${e.message}`);
        return;
      }
      if (hostKeyError) return fail(hostKeyError);
      if (e.level === "client-authentication") return fail(authError(label, r, keychain?.report, serverMethods, interactive));
      fail(new UserError(`SSH connection to ${label} failed: ${e.message}`, "Check that `ssh HOST` works from this machine."));
    };
    const onClose = () => {
      if (hostKeyError) return fail(hostKeyError);
      fail(new UserError(`SSH connection to ${label} closed during the handshake.`, "Check that `ssh HOST` works from this machine."));
    };
    client.once("ready", onReady);
    client.on("handshake", (n: { cs?: { cipher?: string } }) => n.cs?.cipher && CIPHER.set(client, n.cs.cipher));
    client.on("error", onError);
    client.once("close", onClose);
    client.connect(config);
  });
  return client;
}

function authError(label: string, r: ResolvedSshHost, rep: AuthReport | undefined, serverMethods: string[] | null, interactive: boolean): UserError {
  const tried: string[] = [];
  if (rep?.offered.length) tried.push(`keys offered: ${rep.offered.join(", ")}`);
  else tried.push("no key to offer (no ssh-agent keys, no identity file found)");
  if (rep?.notes.length) tried.push(...rep.notes);
  if (!interactive) tried.push("password and keyboard-interactive were not tried (not interactive)");
  if (serverMethods) tried.push(`the server allows: ${serverMethods.join(", ")}`);
  return new AuthError(
    `SSH authentication as ${label} failed.\n  - ${tried.join("\n  - ")}`,
    `Check that \`ssh ${r.user}@${r.alias}${r.port === 22 ? "" : ` -p ${r.port}`}\` works. Load your key with \`ssh-add\`, or pass one with -i/identityFile; the board needs its public key in ~${r.user}/.ssh/authorized_keys.`,
  );
}

function createSshTarget(client: SshClient, chain: SshClient[], r: ResolvedSshHost, log: (m: string) => void): SshTarget {
  const name = `${r.user}@${r.alias}:${r.port}`;
  const pending = new Set<() => void>();
  let dead = false;
  let markClosed: () => void = () => {};
  const closed = new Promise<void>((res) => (markClosed = res));
  const onGone = () => {
    if (dead) return;
    dead = true;
    // The lead relies on this: a dropped link must end every running command at once.
    for (const f of [...pending]) f();
    pending.clear();
    for (const c of chain) c.end();
    markClosed();
  };
  client.on("error", (e: Error) => {
    log(`SSH ${name}: ${e.message}`);
    onGone();
  });
  client.on("close", onGone);
  client.on("end", onGone);

  let uid: Promise<number> | undefined;
  const loginUid = () => (uid ??= run(["id", "-u"]).then((res) => Number(res.stdout.trim())));

  const open = (command: string): Promise<RemoteProcess> =>
    new Promise((resolve, reject) => {
      if (dead) return reject(new UserError(`The SSH connection to ${name} is closed.`, "The board may have rebooted or the network dropped; run again."));
      client.exec(command, (err, ch) => {
        if (err) return reject(new UserError(`Cannot start a command on ${name}: ${err.message}`, "The connection may have dropped."));
        resolve(wrapChannel(ch));
      });
    });

  const wrapChannel = (ch: ClientChannel): RemoteProcess => {
    let code: number | null = null;
    let settle!: () => void;
    const exited = new Promise<number | null>((res) => {
      settle = () => {
        pending.delete(settle);
        res(code);
      };
    });
    pending.add(settle);
    ch.on("exit", (c: number | null) => {
      code = typeof c === "number" ? c : null;
    });
    ch.on("close", () => settle());
    return {
      stdin: ch,
      stdout: ch,
      stderr: ch.stderr as Readable,
      exited,
      kill() {
        try {
          ch.signal("KILL");
        } catch {}
        try {
          ch.close();
        } catch {}
      },
    };
  };

  const command = async (argv: readonly string[], o: SpawnOptions = {}): Promise<string> => {
    if (argv.length === 0) throw new Error("spawn: empty argv");
    const parts: string[] = [];
    if (o.root && (await loginUid()) !== 0) parts.push("sudo", "-n", "--");
    const env = Object.entries(o.env ?? {});
    if (env.length) {
      for (const [k] of env) if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new Error(`spawn: bad environment variable name "${k}"`);
      parts.push("env", ...env.map(([k, v]) => `${k}=${v}`));
    }
    parts.push(...argv);
    return shellJoin(parts);
  };

  const spawn = async (argv: readonly string[], o: SpawnOptions = {}) => open(await command(argv, o));
  const run = async (argv: readonly string[], o: ExecOptions = {}): Promise<ExecResult> => {
    try {
      return await execVia(() => spawn(argv, o), argv, name, o);
    } catch (e) {
      throw o.root ? explainSudoFailure(e, name, r.user) : e;
    }
  };

  return {
    name,
    kind: "ssh",
    host: r.alias,
    resolved: r,
    closed,
    authMethod: AUTH_METHOD.get(client) ?? "?",
    cipher: CIPHER.get(client) ?? "?",
    spawn,
    exec: run,
    put: (path, data, o) => putVia(spawn, name, path, data, o),
    async close() {
      if (!dead) {
        for (const c of [...chain].reverse()) c.end();
        await Promise.race([closed, Bun.sleep(2000)]);
        onGone();
      }
    },
  };
}
