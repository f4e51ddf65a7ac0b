// The SSH adapter against a real OpenSSH sshd on 127.0.0.1 (tests/fixtures/sshd). Needs root and
// /usr/sbin/sshd (Debian package openssh-server, installed by scripts/deps.sh).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { RemoteCommandError, UserError } from "../../../src/errors.ts";
import { addKnownHost } from "../../../src/target/known-hosts.ts";
import { connectError, connectSsh, HostKeyError, NoAnswerError, type SshConnectOptions } from "../../../src/target/ssh.ts";
import { keygen, sessionPids, sshdAvailable, startSshd, type Sshd, type TestKey } from "../../fixtures/sshd/sshd.ts";

test("sshd is available (install openssh-server: scripts/deps.sh)", () => {
  expect(sshdAvailable()).toBe(true);
});

const dir = mkdtempSync(join(tmpdir(), "fl-ssh-"));
let sshd: Sshd;
let jump: Sshd;
let idTest: TestKey, idPass: TestKey, idAgent: TestKey, idOther: TestKey;
const PASS = "correct horse";
let agent: ChildProcess | undefined;
const agentSock = join(dir, "agent.sock");
const NONROOT = "flashlive-test";
let haveNonRoot = false;

beforeAll(async () => {
  sshd = await startSshd({ hostKeyTypes: ["ed25519", "rsa"] });
  jump = await startSshd();
  idTest = keygen(dir, "id_test");
  idPass = keygen(dir, "id_pass", "ed25519", PASS);
  idAgent = keygen(dir, "id_agent");
  idOther = keygen(dir, "id_other");
  for (const s of [sshd, jump]) s.authorize(idTest.pub, idPass.pub, idAgent.pub);
  // A non-root login user for the sudo path; created only if missing, unlocked ("*": no password).
  if (spawnSync("id", [NONROOT]).status !== 0) {
    spawnSync("useradd", ["--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/bin/sh", NONROOT]);
    spawnSync("usermod", ["-p", "*", NONROOT]);
  }
  haveNonRoot = spawnSync("id", [NONROOT]).status === 0;
});

afterAll(async () => {
  agent?.kill();
  await sshd?.stop();
  await jump?.stop();
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
/** A fresh known_hosts that already trusts both test servers (hashed, [127.0.0.1]:port form). */
function trustedKnownHosts(...servers: Sshd[]): string {
  const f = join(dir, `known_hosts_${++n}`);
  writeFileSync(f, "");
  for (const s of servers) {
    addKnownHost(f, { host: "127.0.0.1", port: s.port, key: keyBlob(s.hostKeys["ssh-ed25519"]!), hash: true });
  }
  return f;
}
const keyBlob = (pub: string) => Buffer.from(pub.split(" ")[1]!, "base64");

function config(text: string): string {
  const f = join(dir, `config_${++n}`);
  writeFileSync(f, text);
  return f;
}

function opts(o: Partial<SshConnectOptions> = {}): SshConnectOptions {
  return {
    destination: `root@127.0.0.1:${sshd.port}`,
    identityFile: idTest.path,
    sshConfigFile: config("IdentityAgent none\n"),
    knownHostsFile: trustedKnownHosts(sshd, jump),
    interactive: false,
    ...o,
  };
}

/** OpenSSH itself as the oracle: does `ssh` accept this known_hosts for that server? */
function realSshAccepts(knownHosts: string, s: Sshd): boolean {
  const r = spawnSync("ssh", ["-p", String(s.port), "-i", idTest.path, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${knownHosts}`, "-o", "GlobalKnownHostsFile=/dev/null", "-F", "/dev/null", "root@127.0.0.1", "true"], { encoding: "utf8" });
  return r.status === 0;
}

describe("config and connecting", () => {
  test("an alias with HostName, Port, User, IdentityFile; Include; name and host", async () => {
    const inc = join(dir, "inc.d");
    mkdirSync(inc, { recursive: true });
    writeFileSync(join(inc, "board.conf"), `Host board\n  HostName 127.0.0.1\n  Port ${sshd.port}\n  User root\n  IdentityFile ${idTest.path}\n`);
    const t = await connectSsh(opts({ destination: "board", identityFile: undefined, sshConfigFile: config(`Include ${inc}/*.conf\nHost *\n  IdentityAgent none\n  User nobody\n`) }));
    try {
      expect(t.kind).toBe("ssh");
      expect(t.host).toBe("board");
      expect(t.name).toBe(`root@board:${sshd.port}`);
      expect((await t.exec(["id", "-un"])).stdout.trim()).toBe("root");
    } finally {
      await t.close();
    }
  });

  test("ProxyJump through two hops, each resolved through the config", async () => {
    const before = (jump.log().match(/Accepted publickey/g) ?? []).length;
    const cfg = config(
      `Host target\n  HostName 127.0.0.1\n  Port ${sshd.port}\n  ProxyJump hop1,root@127.0.0.1:${jump.port}\n` +
        `Host hop1\n  HostName 127.0.0.1\n  Port ${jump.port}\n  User root\n` +
        `Host *\n  User root\n  IdentityFile ${idTest.path}\n  IdentityAgent none\n`,
    );
    const t = await connectSsh(opts({ destination: "target", identityFile: undefined, sshConfigFile: cfg }));
    try {
      expect((await t.exec(["echo", "through"])).stdout).toBe("through\n");
      // Both hops logged in on the jump server, and the target saw a forwarded connection.
      expect((jump.log().match(/Accepted publickey/g) ?? []).length - before).toBe(2);
    } finally {
      await t.close();
    }
  });

  test("ProxyCommand (here OpenSSH's own ssh -W through the jump server)", async () => {
    const before = (jump.log().match(/Accepted publickey/g) ?? []).length;
    const pc = `ssh -F /dev/null -i ${idTest.path} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -p ${jump.port} -W %h:%p root@127.0.0.1`;
    const cfg = config(`Host viacmd\n  HostName 127.0.0.1\n  Port ${sshd.port}\n  User root\n  ProxyCommand ${pc}\n  IdentityAgent none\n`);
    const t = await connectSsh(opts({ destination: "viacmd", sshConfigFile: cfg }));
    try {
      expect((await t.exec(["echo", "via"])).stdout).toBe("via\n");
      expect((jump.log().match(/Accepted publickey/g) ?? []).length - before).toBe(1);
    } finally {
      await t.close();
    }
  });

  test("a server that never speaks SSH hits the handshake limit", async () => {
    const { createServer } = await import("node:net");
    const silent = createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const port = (silent.address() as { port: number }).port;
    try {
      const t0 = Date.now();
      const e = await connectSsh(opts({ destination: `root@127.0.0.1:${port}`, handshakeTimeoutMs: 500 })).catch((x) => x);
      expect(e).toBeInstanceOf(UserError);
      expect(e.message).toContain("did not finish");
      expect(Date.now() - t0).toBeLessThan(3000);
    } finally {
      silent.close();
    }
  });

  test("bannerTimeoutMs: a port that accepts and says nothing (a NAT before a booting board) fails fast with NoAnswerError; sshd is not cut off", async () => {
    const { createServer } = await import("node:net");
    const silent = createServer(() => {});
    // Says its version line late (after 0.4 s), then nothing: past the banner, the handshake limit rules.
    const late = createServer((s) => void setTimeout(() => s.write("SSH-2.0-late\r\n"), 400));
    for (const srv of [silent, late]) await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const port = (srv: typeof silent) => (srv.address() as { port: number }).port;
    try {
      let t0 = Date.now();
      const e = await connectSsh(opts({ destination: `root@127.0.0.1:${port(silent)}`, bannerTimeoutMs: 500, handshakeTimeoutMs: 10_000 })).catch((x) => x);
      expect(e).toBeInstanceOf(NoAnswerError);
      expect(e.message).toContain("sent nothing in 0.5 s");
      expect(Date.now() - t0).toBeLessThan(2000);
      t0 = Date.now();
      const e2 = await connectSsh(opts({ destination: `root@127.0.0.1:${port(late)}`, bannerTimeoutMs: 1000, handshakeTimeoutMs: 1500 })).catch((x) => x);
      expect(e2).not.toBeInstanceOf(NoAnswerError);
      expect(e2).toBeInstanceOf(UserError);
      expect(e2.message).toContain("did not finish in 1.5 s");
      // A real server answers well within the limit.
      const t = await connectSsh(opts({ bannerTimeoutMs: 1000 }));
      expect((await t.exec(["echo", "in"])).stdout).toBe("in\n");
      await t.close();
    } finally {
      silent.close();
      late.close();
    }
  });

  test("a refused port is a UserError naming host and port", async () => {
    const e = await connectSsh(opts({ destination: "root@127.0.0.1:1" })).catch((x) => x);
    expect(e).toBeInstanceOf(UserError);
    expect(e.message).toContain("127.0.0.1 port 1");
  });
});

describe("authentication", () => {
  test("ssh-agent via SSH_AUTH_SOCK (and IdentityAgent)", async () => {
    agent = spawn("ssh-agent", ["-D", "-a", agentSock], { stdio: "ignore" });
    for (let i = 0; i < 100 && !existsSync(agentSock); i++) await Bun.sleep(20);
    const add = spawnSync("ssh-add", [idAgent.path], { env: { ...process.env, SSH_AUTH_SOCK: agentSock }, encoding: "utf8" });
    expect(add.status).toBe(0);
    const saved = process.env.SSH_AUTH_SOCK;
    process.env.SSH_AUTH_SOCK = agentSock;
    try {
      const t = await connectSsh(opts({ identityFile: undefined, sshConfigFile: config("") }));
      await t.close();
    } finally {
      if (saved === undefined) delete process.env.SSH_AUTH_SOCK;
      else process.env.SSH_AUTH_SOCK = saved;
    }
    const t2 = await connectSsh(opts({ identityFile: undefined, sshConfigFile: config(`IdentityAgent ${agentSock}\n`) }));
    await t2.close();
    expect(sshd.log()).toContain(createHashFp(idAgent.pub));
  });

  test("IdentitiesOnly: agent keys that are not an IdentityFile are not offered", async () => {
    const cfg = config(`IdentityAgent ${agentSock}\nIdentitiesOnly yes\nIdentityFile ${idOther.path}\n`);
    const e = await connectSsh(opts({ identityFile: undefined, sshConfigFile: cfg })).catch((x) => x);
    expect(e).toBeInstanceOf(UserError);
    expect(e.message).toContain(`keys offered: ${idOther.path}\n`);
    // The same with the agent's key named as IdentityFile: signed by the agent.
    const cfg2 = config(`IdentityAgent ${agentSock}\nIdentitiesOnly yes\nIdentityFile ${idAgent.path}.pub\n`);
    const t = await connectSsh(opts({ identityFile: undefined, sshConfigFile: cfg2 }));
    await t.close();
  });

  test("a passphrase key asks through prompt (secret), again after a wrong answer", async () => {
    const asked: { q: string; secret: boolean }[] = [];
    const answers = ["wrong", PASS];
    const t = await connectSsh(opts({ identityFile: idPass.path, interactive: true, prompt: async (q, o) => (asked.push({ q, ...o }), answers.shift()!) }));
    await t.close();
    expect(asked.length).toBe(2);
    expect(asked[0]!.secret).toBe(true);
    expect(asked[0]!.q).toContain(idPass.path);
  });

  test("a passphrase key is not asked for when the server would not take it", async () => {
    sshd.authorize(idTest.pub);
    try {
      let asked = 0;
      const e = await connectSsh(opts({ identityFile: idPass.path, interactive: true, prompt: async () => (asked++, PASS) })).catch((x) => x);
      expect(e).toBeInstanceOf(UserError);
      expect(asked).toBe(0);
    } finally {
      sshd.authorize(idTest.pub, idPass.pub, idAgent.pub);
    }
  });

  test("non-interactive: a passphrase key is skipped with a note; failure lists what was tried", async () => {
    const e = await connectSsh(opts({ identityFile: idPass.path })).catch((x) => x);
    expect(e).toBeInstanceOf(UserError);
    expect(e.message).toContain("authentication as root@127.0.0.1");
    expect(e.message).toContain(idPass.path);
    expect(e.message).toContain("passphrase-protected");
    expect(e.hint).toContain("ssh-add");
  });

  test("an unauthorized key fails with the keys offered and the hint", async () => {
    const e = await connectSsh(opts({ identityFile: idOther.path })).catch((x) => x);
    expect(e).toBeInstanceOf(UserError);
    expect(e.message).toContain(`keys offered: ${idOther.path}`);
    expect(e.message).toContain("the server allows: publickey");
    expect(e.hint).toContain(`ssh root@127.0.0.1 -p ${sshd.port}`);
  });
});

function createHashFp(pub: string): string {
  return `SHA256:${createHash("sha256").update(keyBlob(pub)).digest("base64").replace(/=+$/, "")}`;
}

describe("host keys", () => {
  test("unknown host: refused when not interactive, with the fingerprint", async () => {
    const kh = join(dir, "kh_empty");
    const e = await connectSsh(opts({ knownHostsFile: kh })).catch((x) => x);
    expect(e).toBeInstanceOf(HostKeyError);
    expect(e.kind).toBe("unknown");
    expect(e.message).toContain(createHashFp(sshd.hostKeys["ssh-ed25519"]!));
    expect(e.hint).toContain("--accept-new-host-key");
    expect(existsSync(kh)).toBe(false);
  });

  test("acceptNewHostKey files the key where OpenSSH then accepts it (plain and HashKnownHosts)", async () => {
    for (const hash of [false, true]) {
      const kh = join(dir, `kh_new_${hash}`);
      const t = await connectSsh(opts({ knownHostsFile: kh, acceptNewHostKey: true, sshConfigFile: config(`IdentityAgent none\nHashKnownHosts ${hash ? "yes" : "no"}\n`) }));
      await t.close();
      const text = readFileSync(kh, "utf8");
      expect(text.startsWith(hash ? "|1|" : `[127.0.0.1]:${sshd.port} ssh-ed25519 `)).toBe(true);
      expect(realSshAccepts(kh, sshd)).toBe(true);
    }
  });

  test("interactive: asks like ssh, 'yes' files the key, 'no' refuses", async () => {
    const kh = join(dir, "kh_ask");
    const qs: string[] = [];
    const e = await connectSsh(opts({ knownHostsFile: kh, interactive: true, prompt: async (q) => (qs.push(q), "no") })).catch((x) => x);
    expect(e).toBeInstanceOf(HostKeyError);
    expect(qs[0]).toContain("Are you sure you want to continue connecting (yes/no/[fingerprint])?");
    expect(qs[0]).toContain(createHashFp(sshd.hostKeys["ssh-ed25519"]!));
    const answers = ["maybe", "yes"];
    const t = await connectSsh(opts({ knownHostsFile: kh, interactive: true, prompt: async () => answers.shift()! }));
    await t.close();
    expect(realSshAccepts(kh, sshd)).toBe(true);
  });

  test("a known key of another type makes the server present that type", async () => {
    const kh = join(dir, "kh_rsa");
    addKnownHost(kh, { host: "127.0.0.1", port: sshd.port, key: keyBlob(sshd.hostKeys["ssh-rsa"]!) });
    const t = await connectSsh(opts({ knownHostsFile: kh }));
    await t.close();
  });

  test("changed key: refused with file:line and the ssh-keygen -R fix; acceptNewHostKey does not help", async () => {
    const kh = join(dir, "kh_changed");
    writeFileSync(kh, `# first line\n[127.0.0.1]:${sshd.port} ${jump.hostKeys["ssh-ed25519"]}\n`);
    const e = await connectSsh(opts({ knownHostsFile: kh, acceptNewHostKey: true })).catch((x) => x);
    expect(e).toBeInstanceOf(HostKeyError);
    expect(e.kind).toBe("changed");
    expect(e.message).toContain(`HOST KEY CHANGED for [127.0.0.1]:${sshd.port}`);
    expect(e.message).toContain(`${kh}:2`);
    expect(e.hint).toContain(`ssh-keygen -R '[127.0.0.1]:${sshd.port}' -f ${kh}`);
  });

  test("changed key: onHostKeyChanged may replace it (after a re-flash)", async () => {
    const kh = join(dir, "kh_replace");
    writeFileSync(kh, `[127.0.0.1]:${sshd.port} ${jump.hostKeys["ssh-ed25519"]}\n`);
    let seen = "";
    const t = await connectSsh(opts({ knownHostsFile: kh, onHostKeyChanged: (c) => ((seen = `${c.entry.file}:${c.entry.line} ${c.fingerprint}`), true) }));
    await t.close();
    expect(seen).toBe(`${kh}:1 ${createHashFp(sshd.hostKeys["ssh-ed25519"]!)}`);
    expect(realSshAccepts(kh, sshd)).toBe(true);
  });

  test("@revoked key is refused", async () => {
    const kh = join(dir, "kh_revoked");
    writeFileSync(kh, `@revoked * ${sshd.hostKeys["ssh-ed25519"]}\n[127.0.0.1]:${sshd.port} ${sshd.hostKeys["ssh-ed25519"]}\n`);
    const e = await connectSsh(opts({ knownHostsFile: kh })).catch((x) => x);
    expect(e).toBeInstanceOf(HostKeyError);
    expect(e.kind).toBe("revoked");
  });
});

describe("commands", () => {
  test("exec: exit codes, stderr, quoting, env, check", async () => {
    const t = await connectSsh(opts());
    try {
      const r = await t.exec(["sh", "-c", 'echo out; echo "err $1" >&2; exit 3', "sh", "a b"], { check: false });
      expect(r).toEqual({ code: 3, stdout: "out\n", stderr: "err a b\n" });
      const e = await t.exec(["false"]).catch((x) => x);
      expect(e).toBeInstanceOf(RemoteCommandError);
      expect(e.code).toBe(1);
      const tricky = ["it's", "$HOME", "a;b", "`x`", "", "*", "new\nline", '"q"'];
      expect((await t.exec(["printf", "%s|", ...tricky])).stdout).toBe(`${tricky.join("|")}|`);
      expect((await t.exec(["sh", "-c", 'printf "%s" "$FL_X"'], { env: { FL_X: "v a'l" } })).stdout).toBe("v a'l");
      expect((await t.exec(["cat"], { stdin: "fed" })).stdout).toBe("fed");
      expect((await t.exec(["id", "-u"], { root: true })).stdout.trim()).toBe("0");
      const lines: string[] = [];
      await t.exec(["sh", "-c", "echo 1; echo 2"], { onStdout: (c) => lines.push(c) });
      expect(lines.join("")).toBe("1\n2\n");
    } finally {
      await t.close();
    }
  });

  test("spawn streams stdin and stdout", async () => {
    const t = await connectSsh(opts());
    try {
      const p = await t.spawn(["sh", "-c", "while read l; do echo \"got $l\"; done"]);
      let out = "";
      p.stdout.on("data", (c: Buffer) => (out += c));
      p.stdin.write("one\n");
      for (let i = 0; i < 100 && !out.includes("got one"); i++) await Bun.sleep(10);
      expect(out).toBe("got one\n");
      p.stdin.end("two\n");
      expect(await p.exited).toBe(0);
      expect(out).toBe("got one\ngot two\n");
    } finally {
      await t.close();
    }
  });

  test("every cipher flash-live speaks, chacha20 included, carries 3 MiB intact (Ciphers from the config)", async () => {
    const data = randomBytes(3 << 20);
    const want = createHash("sha256").update(data).digest("hex");
    for (const cipher of ["chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr"]) {
      const t = await connectSsh(opts({ sshConfigFile: config(`IdentityAgent none\nCiphers ${cipher}\n`) }));
      try {
        expect(t.cipher).toBe(cipher);
        const p = await t.spawn(["sha256sum"]);
        let out = "";
        p.stdout.on("data", (c: Buffer) => (out += c));
        // Odd-sized writes: packets of every length, not only full 32 KiB ones.
        for (let off = 0, n = 1; off < data.length; off += n, n = (n * 7 + 13) % 200_000 || 1) p.stdin.write(data.subarray(off, off + n));
        p.stdin.end();
        expect(await p.exited).toBe(0);
        expect(out.split(" ")[0]).toBe(want);
      } finally {
        await t.close();
      }
    }
    const t = await connectSsh(opts());
    expect(t.cipher).toBe("chacha20-poly1305@openssh.com"); // the default, as with OpenSSH
    await t.close();
    const e = await connectSsh(opts({ sshConfigFile: config("IdentityAgent none\nCiphers 3des-cbc\n") })).catch((x) => x);
    expect(e).toBeInstanceOf(UserError);
    expect(e.message).toContain('"Ciphers 3des-cbc"');
    expect(e.hint).toContain("chacha20-poly1305@openssh.com");
  });

  test("rekeying mid-stream (the server's RekeyLimit: OpenSSH rekeys chacha20 after 1 GiB) keeps the connection and every byte, each cipher", async () => {
    // A small limit makes the server start several key exchanges inside 3 MiB, in both directions.
    const s = await startSshd({ extra: ["RekeyLimit 256K"] });
    s.authorize(idTest.pub);
    const data = randomBytes(3 << 20);
    const want = createHash("sha256").update(data).digest("hex");
    try {
      const kh = trustedKnownHosts(s);
      for (const cipher of ["chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com", "aes128-ctr"]) {
        const t = await connectSsh(opts({ destination: `root@127.0.0.1:${s.port}`, knownHostsFile: kh, sshConfigFile: config(`IdentityAgent none\nCiphers ${cipher}\n`) }));
        try {
          const p = await t.spawn(["sh", "-c", "sha256sum; head -c 1048576 /dev/zero"]);
          let out = "";
          let outBytes = 0;
          p.stdout.on("data", (c: Buffer) => {
            outBytes += c.length;
            if (out.length < 64) out += c.subarray(0, 64).toString("latin1");
          });
          for (let off = 0; off < data.length; off += 65536) p.stdin.write(data.subarray(off, off + 65536));
          p.stdin.end();
          // Before the fix: null (sshd: "Bad packet length", the connection dropped).
          expect(await p.exited).toBe(0);
          expect([cipher, out.slice(0, 64)]).toEqual([cipher, want]);
          expect(outBytes).toBe(68 + (1 << 20)); // "HASH  -\n" then the zeros
        } finally {
          await t.close();
        }
      }
    } finally {
      await s.stop();
    }
  });

  test("a non-root login runs root commands through sudo -n", async () => {
    if (!haveNonRoot) throw new Error(`could not create the test user ${NONROOT}`);
    const t = await connectSsh(opts({ destination: `${NONROOT}@127.0.0.1:${sshd.port}` }));
    try {
      expect((await t.exec(["id", "-u"])).stdout.trim()).not.toBe("0");
      const r = await t.exec(["id", "-u"], { root: true, check: false });
      // sudo is either missing here or asks for a password: either way `sudo -n` ran, not id.
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/sudo/);
      const e = await t.exec(["id", "-u"], { root: true }).catch((x) => x);
      expect(e).toBeInstanceOf(UserError);
      expect(e.message).toContain(`${NONROOT} is not root`);
    } finally {
      await t.close();
    }
  });
});

describe("connection loss", () => {
  test("killing the session resolves every pending exited with null, and closed", async () => {
    const s = await startSshd();
    s.authorize(idTest.pub);
    try {
      const kh = trustedKnownHosts(s);
      const t = await connectSsh(opts({ destination: `root@127.0.0.1:${s.port}`, knownHostsFile: kh }));
      const a = await t.spawn(["sleep", "30"]);
      const b = await t.spawn(["sleep", "30"]);
      const t0 = Date.now();
      for (const pid of sessionPids(s)) process.kill(pid, "SIGKILL");
      expect(await Promise.all([a.exited, b.exited])).toEqual([null, null]);
      await t.closed;
      expect(Date.now() - t0).toBeLessThan(3000);
      await expect(t.exec(["true"])).rejects.toBeInstanceOf(UserError);
    } finally {
      await s.stop();
    }
  });

  test("losing the jump host ends commands on the target too", async () => {
    const j = await startSshd();
    j.authorize(idTest.pub);
    try {
      const cfg = config(`Host behind\n  HostName 127.0.0.1\n  Port ${sshd.port}\n  User root\n  ProxyJump root@127.0.0.1:${j.port}\nHost *\n  IdentityFile ${idTest.path}\n  IdentityAgent none\n`);
      const t = await connectSsh(opts({ destination: "behind", sshConfigFile: cfg, knownHostsFile: trustedKnownHosts(sshd, j) }));
      const p = await t.spawn(["sleep", "30"]);
      for (const pid of sessionPids(j)) process.kill(pid, "SIGKILL");
      expect(await p.exited).toBe(null);
      await t.closed;
    } finally {
      await j.stop();
    }
  });

  test("a silent link is noticed by keepalive", async () => {
    const s = await startSshd();
    s.authorize(idTest.pub);
    const pids: number[] = [];
    try {
      const t = await connectSsh(opts({ destination: `root@127.0.0.1:${s.port}`, knownHostsFile: trustedKnownHosts(s), keepaliveIntervalMs: 200, keepaliveCountMax: 2 }));
      const p = await t.spawn(["sleep", "30"]);
      pids.push(...sessionPids(s));
      for (const pid of pids) process.kill(pid, "SIGSTOP");
      const t0 = Date.now();
      expect(await p.exited).toBe(null);
      expect(Date.now() - t0).toBeLessThan(3000);
    } finally {
      for (const pid of pids) process.kill(pid, "SIGKILL");
      await s.stop();
    }
  });

  test("a put cut off by a dropped connection fails and leaves no file", async () => {
    const s = await startSshd();
    s.authorize(idTest.pub);
    try {
      const t = await connectSsh(opts({ destination: `root@127.0.0.1:${s.port}`, knownHostsFile: trustedKnownHosts(s) }));
      const dest = join(dir, "cut-off");
      let sent = 0;
      const slow = Readable.from(
        (async function* () {
          for (let i = 0; i < 1000; i++) {
            yield randomBytes(64 * 1024);
            await Bun.sleep(5);
          }
        })(),
      );
      const put = t.put(dest, slow, { onProgress: (b) => (sent = b) });
      while (sent < 1 << 20 || !existsSync(dest)) await Bun.sleep(10);
      for (const pid of sessionPids(s)) process.kill(pid, "SIGKILL");
      await expect(put).rejects.toBeInstanceOf(Error);
      await put.catch(() => {});
      for (let i = 0; i < 100 && existsSync(dest); i++) await Bun.sleep(20);
      expect(existsSync(dest)).toBe(false);
    } finally {
      await s.stop();
    }
  });
});

describe("put", () => {
  test("a 64 MiB stream lands intact, mode 0600 from the start, replacing a 0644 file", async () => {
    const t = await connectSsh(opts());
    try {
      const dest = join(dir, "big.bin");
      writeFileSync(dest, "old", { mode: 0o644 });
      const hash = createHash("sha256");
      const chunks = 512;
      const src = Readable.from(
        (async function* () {
          for (let i = 0; i < chunks; i++) {
            const b = randomBytes(128 * 1024);
            hash.update(b);
            yield b;
          }
        })(),
      );
      let last = 0;
      let modeSeen = "";
      await t.put(dest, src, {
        mode: "0600",
        onProgress: (b) => {
          if (!modeSeen && b > 4 << 20) modeSeen = (statSync(dest).mode & 0o777).toString(8);
          last = b;
        },
      });
      expect(last).toBe(chunks * 128 * 1024);
      expect(modeSeen).toBe("600");
      const st = statSync(dest);
      expect((st.mode & 0o777).toString(8)).toBe("600");
      expect(st.size).toBe(chunks * 128 * 1024);
      expect(createHash("sha256").update(readFileSync(dest)).digest("hex")).toBe(hash.digest("hex"));
    } finally {
      await t.close();
    }
  });

  test("bytes and strings, other modes, refusals", async () => {
    const t = await connectSsh(opts());
    try {
      const f = join(dir, "small");
      await t.put(f, new Uint8Array([1, 2, 3]), { mode: "0755" });
      expect((statSync(f).mode & 0o777).toString(8)).toBe("755");
      expect([...readFileSync(f)]).toEqual([1, 2, 3]);
      await t.put(f, "text\n", { root: true });
      expect(readFileSync(f, "utf8")).toBe("text\n");
      expect((statSync(f).mode & 0o777).toString(8)).toBe("600");
      const e = await t.put(dir, "x").catch((x) => x);
      expect(e).toBeInstanceOf(RemoteCommandError);
      expect(e.stderr).toContain("not a regular file");
      await expect(t.put(join(dir, "no", "such", "dir"), "x")).rejects.toBeInstanceOf(RemoteCommandError);
      await expect(t.put(f, "x", { mode: "rw" })).rejects.toThrow("bad mode");
    } finally {
      await t.close();
    }
  });
});

describe("connectError: a failed TCP connect in words", () => {
  const err = (code: string) => Object.assign(new Error(`connect ${code}`), { code }) as NodeJS.ErrnoException;
  const r = { hostname: "pi4.local", port: 2222 };
  test("a name that does not resolve says so and suggests the IP address", () => {
    const e = connectError(r, err("ENOTFOUND"));
    expect(e.message).toBe("Cannot connect to pi4.local port 2222: the name pi4.local does not resolve (ENOTFOUND).");
    expect(e.hint).toContain("IP address");
  });
  test("refused: the host is there, nothing listens: is sshd running", () => {
    const e = connectError(r, err("ECONNREFUSED"));
    expect(e.message).toContain("connection refused (ECONNREFUSED)");
    expect(e.hint).toContain("Is sshd running");
    expect(e.hint).toContain("ssh -G HOST");
  });
  test("no route; anything else keeps its code", () => {
    expect(connectError(r, err("EHOSTUNREACH")).message).toContain("no route to the host (EHOSTUNREACH)");
    expect(connectError(r, err("EPIPE")).message).toBe("Cannot connect to pi4.local port 2222: EPIPE.");
  });
});
