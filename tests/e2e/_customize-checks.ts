/**
 * Helpers for tests/e2e/customize.test.ts: the customization config a user writes, the sector patch
 * the CLI dumped (FLASH_LIVE_TEST_PATCH_OUT), the boot partition it produces, and logins as the
 * configured user with OpenSSH (as that user would log in, not through the harness's root key).
 */
import { chmodSync, closeSync, openSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { Board } from "../harness/board.ts";
import type { BoardImage } from "../harness/build-image.ts";
import { guarded } from "../harness/ssh.ts";
import type { UserHome } from "./_flash-live.ts";

/**
 * Values that must arrive exactly as written: quotes, `$`, backticks, `\`, spaces (one leading),
 * `#`, `=`, `;` and non-ASCII. The seed's format has no quoting: everything after the first `=`.
 */
export const SECRETS = {
  user: "skipper",
  password: `Pa$$ w'o"rd\`id\`#\\=ü€`,
  wifiSsid: `Sea $HOME "Wi-Fi" #1 \\ ö`,
  wifiPassword: ` q"u'o $(id) \`uname\` \\ #ä€=;`,
  wifiCountry: "FI",
  timezone: "Europe/Helsinki",
} as const;

export interface UserKeys {
  /** Private key paths, one per configured ssh-key. */
  keys: string[];
  /** The .pub lines, as authorized_keys must hold them. */
  pubs: string[];
}

/** Two ed25519 keys in the user's ~/.ssh, the way a user makes them. */
export async function makeUserKeys(home: UserHome): Promise<UserKeys> {
  const keys: string[] = [];
  const pubs: string[] = [];
  for (const name of ["skipper_a", "skipper_b"]) {
    const path = home.path(".ssh", name);
    await sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", `${name}@e2e`, "-f", path]);
    keys.push(path);
    pubs.push(readFileSync(`${path}.pub`, "utf8").trim());
  }
  return { keys, pubs };
}

/**
 * The seed's key=value .conf in the user's HOME (mode 0600). One key by `~/`, one relative to the
 * file. Returns the path.
 */
export function writeConfig(home: UserHome, hostname: string): string {
  const path = home.path("board.conf");
  const s = SECRETS;
  writeFileSync(
    path,
    [
      "# flash-live e2e: every value below must arrive exactly as written",
      `hostname=${hostname}`,
      `user=${s.user}`,
      `password=${s.password}`,
      "ssh-key=~/.ssh/skipper_a.pub",
      "ssh-key=.ssh/skipper_b.pub",
      "",
      `wifi-ssid=${s.wifiSsid}`,
      `wifi-password=${s.wifiPassword}`,
      `wifi-country=${s.wifiCountry}`,
      `timezone=${s.timezone}`,
      "",
    ].join("\n"),
    { mode: 0o600 },
  );
  return path;
}

export interface Patch {
  offset: number;
  data: Uint8Array;
}

/** The sectors the CLI sent (FLASH_LIVE_TEST_PATCH_OUT=prefix): prefix.idx lines `disk_offset length data_offset`, data in prefix.bin. */
export function readPatchDump(prefix: string): { patches: Patch[]; bin: Buffer } {
  const bin = readFileSync(`${prefix}.bin`);
  const patches = readFileSync(`${prefix}.idx`, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const [offset, length, from] = line.split(" ").map(Number) as [number, number, number];
      return { offset, data: bin.subarray(from, from + length) };
    });
  return { patches, bin };
}

/**
 * The image's boot partition with the patch applied, as a file mtools and fsck.fat can read. Fails
 * when an extent leaves partition 1 or is not whole sectors: "exactly the intended sectors".
 */
export function patchedBootPartition(img: BoardImage, patches: Patch[], out: string): string {
  const part = img.partitions[0]!;
  const buf = Buffer.alloc(part.size);
  const fd = openSync(img.raw, "r");
  try {
    for (let got = 0; got < part.size; ) {
      const n = readSync(fd, buf, got, part.size - got, part.start + got);
      if (n <= 0) throw new Error(`short read of ${img.raw}`);
      got += n;
    }
  } finally {
    closeSync(fd);
  }
  for (const p of patches) {
    if (p.offset % 512 !== 0 || p.data.length % 512 !== 0) throw new Error(`extent ${p.offset}+${p.data.length} is not whole sectors`);
    if (p.offset < part.start || p.offset + p.data.length > part.start + part.size) {
      throw new Error(`extent ${p.offset}+${p.data.length} lies outside the boot partition ${part.start}+${part.size}`);
    }
    buf.set(p.data, p.offset - part.start);
  }
  const ofd = openSync(out, "w", 0o600);
  writeSync(ofd, buf);
  closeSync(ofd);
  return out;
}

/** A file from a FAT image (mtools), or undefined when it is not there. */
export async function fatRead(fatImage: string, name: string): Promise<string | undefined> {
  const r = await sh(["mtype", "-i", fatImage, `::${name}`], { check: false });
  return r.code === 0 ? r.stdout : undefined;
}

export async function fatList(fatImage: string): Promise<string[]> {
  const r = await sh(["mdir", "-b", "-i", fatImage, "::"]);
  return r.stdout.split("\n").filter(Boolean).map((l) => l.replace(/^::\//, ""));
}

/** `wpa_passphrase` (wpa_supplicant's own tool) as the oracle for the PSK; passphrase on stdin. */
export async function wpaPassphrasePsk(ssid: string, passphrase: string): Promise<string> {
  const r = await sh(["wpa_passphrase", ssid], { stdin: `${passphrase}\n` });
  const m = /^\s*psk=([0-9a-f]{64})$/m.exec(r.stdout);
  if (!m) throw new Error(`wpa_passphrase gave no psk:\n${r.stdout}`);
  return m[1]!;
}

/**
 * OpenSSH as the configured user: one key, no agent, no password, host key checked against a
 * known_hosts made from ssh-keyscan of the running board.
 */
export class UserLogin {
  private readonly knownHosts: string;
  constructor(
    private readonly home: UserHome,
    private readonly board: Board,
    private readonly user: string,
  ) {
    this.knownHosts = home.path(".ssh", "known_hosts_e2e");
  }

  async learnHostKey(): Promise<void> {
    writeFileSync(this.knownHosts, `${await this.board.knownHostsLine()}\n`, { mode: 0o600 });
  }

  private base(): string[] {
    return [
      "ssh", "-F", "/dev/null",
      "-o", "IdentityAgent=none",
      "-o", "StrictHostKeyChecking=yes",
      "-o", `UserKnownHostsFile=${this.knownHosts}`,
      "-o", "GlobalKnownHostsFile=/dev/null",
      "-o", "ConnectTimeout=20",
      "-o", "LogLevel=ERROR",
      "-p", String(this.board.sshPort),
    ];
  }

  /** Run `command` logged in with key `keyPath` only. */
  async withKey(keyPath: string, command: string, stdin?: string) {
    const argv = [...this.base(), "-i", keyPath, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no", `${this.user}@127.0.0.1`, "--", guarded(command)];
    return sh(argv, { stdin, check: false, timeoutMs: 120_000 });
  }

  /**
   * A password login (no key offered). The password reaches ssh through an SSH_ASKPASS program that
   * prints a 0600 file: never in argv or the environment.
   */
  async withPassword(password: string, command: string) {
    const pwFile = this.home.path(".e2e-pw");
    const askpass = this.home.path(".e2e-askpass");
    writeFileSync(pwFile, password, { mode: 0o600 });
    writeFileSync(askpass, `#!/bin/sh\ncat ${JSON.stringify(pwFile)}\n`, { mode: 0o700 });
    chmodSync(askpass, 0o700);
    try {
      const argv = [...this.base(), "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "NumberOfPasswordPrompts=1", "-o", "BatchMode=no", `${this.user}@127.0.0.1`, "--", guarded(command)];
      return await sh(argv, { check: false, timeoutMs: 120_000, env: { SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: "force", DISPLAY: "none" }, setsid: true });
    } finally {
      rmSync(pwFile, { force: true });
      rmSync(askpass, { force: true });
    }
  }
}

/** What a board check found, printed with the case's timings. */
export function fmt(o: Record<string, unknown>): string {
  return Object.entries(o)
    .map(([k, v]) => `${k}=${typeof v === "number" ? Number(v.toFixed(1)) : v}`)
    .join(" ");
}

export async function sh(
  argv: string[],
  opts: { stdin?: string; check?: boolean; timeoutMs?: number; env?: Record<string, string>; setsid?: boolean } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  // setsid: no controlling terminal, so ssh asks SSH_ASKPASS instead of a tty.
  const cmd = opts.setsid ? ["setsid", "-w", ...argv] : argv;
  const proc = Bun.spawn(cmd, {
    stdin: opts.stdin === undefined ? "ignore" : new Blob([opts.stdin]),
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, ...opts.env },
  });
  const timer = opts.timeoutMs ? setTimeout(() => proc.kill(), opts.timeoutMs) : undefined;
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  if (code !== 0 && opts.check !== false) throw new Error(`${argv.join(" ")} exited ${code}: ${stderr.trim()}`);
  return { code, stdout, stderr };
}

export const tmpPath = (home: UserHome, name: string) => join(home.dir, name);
