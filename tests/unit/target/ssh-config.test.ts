// ~/.ssh/config resolution is checked against `ssh -G` (OpenSSH's own resolver) as the oracle.
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { homedir, hostname } from "node:os";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { UserError } from "../../../src/errors.ts";
import { expandTokens, parseDestination, resolveCiphers, resolveSshHost } from "../../../src/target/ssh-config.ts";

const dir = mkdtempSync(join(tmpdir(), "fl-sshcfg-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

mkdirSync(join(dir, "conf.d"));
writeFileSync(join(dir, "conf.d", "10-board.conf"), "Host board-inc\n  HostName 10.9.9.9\n  User incuser\n  Port 2201\n");
writeFileSync(join(dir, "conf.d", "20-more.conf"), "Host board-inc more-inc\n  IdentityFile ~/.ssh/inc_key\n");
writeFileSync(join(dir, "conf.d", "ignored.txt"), "Host board-inc\n  User wrong\n");
writeFileSync(join(dir, "in-block.conf"), "User blockuser\nHost never-typed\n  Port 9999\n");
writeFileSync(join(dir, "nested.conf"), `Include ${join(dir, "conf.d")}/*.conf\n`);

const cfg = join(dir, "config");
writeFileSync(
  cfg,
  `# top-level lines apply to every host
ConnectTimeout 7

Host pi pi-alias
  HostName RaspberryPi.Local
  User pi
  Port 2222
  IdentityFile ~/.ssh/pi_key
  IdentityFile %d/.ssh/second_%r@%h:%p
  IdentitiesOnly yes

Host *.lan !skip.lan
  User lanuser
  ProxyJump jump1,admin@jump2:2022
  StrictHostKeyChecking accept-new

Host skip.lan
  Port 2300

Host jump1
  HostName 192.0.2.1
  User jumper
  ProxyJump none

Host tok
  HostName %h.example.org
  UserKnownHostsFile ~/.ssh/kh_%h_%p /tmp/kh2
  HashKnownHosts yes
  HostKeyAlias tok-alias

Host incblock
  Include ${join(dir, "in-block.conf")}
  Port 2444

Host h?st
  Port 2555

Host pc
  ProxyCommand ssh -o IdentitiesOnly=yes -W "%h:%p" jump.example

Include ${join(dir, "nested.conf")}

Match host matched.example user root
  Port 2666

Host *
  User defaultuser
  ServerAliveInterval 11
`,
);

const cliKey = join(dir, "cli_key");
writeFileSync(cliKey, "not really a key, ssh -G only needs it to exist\n");

type G = Record<string, string[]>;
function sshG(host: string, extra: string[] = []): G {
  const r = spawnSync("ssh", ["-G", "-F", cfg, ...extra, host], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(r.stderr);
  const out: G = {};
  for (const line of r.stdout.split("\n")) {
    const i = line.indexOf(" ");
    if (i < 0) continue;
    (out[line.slice(0, i)] ??= []).push(line.slice(i + 1));
  }
  return out;
}

const home = homedir();
const expandHome = (p: string) => (p.startsWith("~/") ? join(home, p.slice(2)) : p);

describe("resolveSshHost agrees with ssh -G", () => {
  const cases: [string, string[], { user?: string; port?: number; identityFile?: string }][] = [
    ["pi", [], {}],
    ["pi-alias", [], {}],
    ["x.lan", [], {}],
    ["skip.lan", [], {}],
    ["jump1", [], {}],
    ["tok", [], {}],
    ["board-inc", [], {}],
    ["more-inc", [], {}],
    ["incblock", [], {}],
    ["host", [], {}],
    ["hoost", [], {}],
    ["matched.example", [], {}],
    ["other.example", [], {}],
    ["otheruser@pi", [], {}],
    ["pi", ["-p", "2999", "-l", "cliuser", "-i", cliKey], { port: 2999, user: "cliuser", identityFile: cliKey }],
    ["Pi", [], {}],
    ["pc", [], {}],
  ];
  for (const [host, args, opts] of cases) {
    test(`${host} ${args.join(" ")}`, () => {
      const g = sshG(host, args);
      const r = resolveSshHost(host, { configFile: cfg, ...opts });
      expect(r.hostname).toBe(g.hostname![0]!);
      expect(r.user).toBe(g.user![0]!);
      expect(r.port).toBe(Number(g.port![0]));
      expect(r.identitiesOnly).toBe(g.identitiesonly![0] === "yes");
      expect(r.hashKnownHosts).toBe(g.hashknownhosts![0] === "yes");
      expect(r.proxyJump.join(",") || undefined).toBe(g.proxyjump?.[0]);
      expect(r.proxyCommand).toBe(g.proxycommand?.[0]);
      expect(r.connectTimeoutMs).toBe(g.connecttimeout?.[0] === "none" ? undefined : Number(g.connecttimeout![0]) * 1000);
      expect(r.serverAliveIntervalS).toBe(Number(g.serveraliveinterval![0]));
      expect(r.hostKeyAlias).toBe(g.hostkeyalias?.[0]);
      const shk: Record<string, string> = { true: "yes", false: "no", ask: "ask", "accept-new": "accept-new" };
      expect(r.strictHostKeyChecking).toBe(shk[g.stricthostkeychecking![0]!] as never);
      expect(r.userKnownHostsFiles).toEqual(g.userknownhostsfile![0]!.split(" ").map(expandHome));
      // ssh -G prints identity files unexpanded; expand them with the same tokens.
      const tokens = { d: home, u: "root", h: r.hostname, r: r.user, p: String(r.port), n: host, l: hostname(), L: hostname().split(".")[0]!, i: "0", k: host, C: "" };
      const theirs = g.identityfile!.map((f) => expandHome(expandTokens(f, tokens))).filter((f) => !/_sk$|id_xmss$|id_dsa$/.test(f));
      expect(r.identityFiles).toEqual(theirs);
    });
  }
});

describe("resolveSshHost details", () => {
  test("relative Include is read from ~/.ssh, globbed and sorted; missing ones are fine", () => {
    const h = join(dir, "home");
    mkdirSync(join(h, ".ssh", "inc"), { recursive: true });
    writeFileSync(join(h, ".ssh", "inc", "b.conf"), "Host rel\n  User second\n  Port 2002\n");
    writeFileSync(join(h, ".ssh", "inc", "a.conf"), "Host rel\n  User first\n");
    writeFileSync(join(h, ".ssh", "config"), "Include inc/*.conf missing.conf\nHost rel\n  HostName rel.example\n");
    const r = resolveSshHost("rel", { home: h, systemConfigFile: null });
    expect(r).toMatchObject({ hostname: "rel.example", user: "first", port: 2002 });
    expect(r.configFiles).toEqual([join(h, ".ssh", "config"), join(h, ".ssh", "inc", "a.conf"), join(h, ".ssh", "inc", "b.conf")]);
    expect(r.identityFiles).toEqual([join(h, ".ssh/id_rsa"), join(h, ".ssh/id_ecdsa"), join(h, ".ssh/id_ed25519")]);
    expect(r.identityFilesAreDefaults).toBe(true);
    expect(r.userKnownHostsFiles).toEqual([join(h, ".ssh/known_hosts"), join(h, ".ssh/known_hosts2")]);
  });

  test("the system config is read after the user's (first value wins)", () => {
    const h = join(dir, "home2");
    mkdirSync(join(h, ".ssh"), { recursive: true });
    writeFileSync(join(h, ".ssh", "config"), "Host sys\n  Port 2003\n");
    const sys = join(dir, "ssh_config");
    writeFileSync(sys, "Host *\n  Port 22\n  HashKnownHosts yes\n  User sysuser\n");
    const r = resolveSshHost("sys", { home: h, systemConfigFile: sys });
    expect(r).toMatchObject({ port: 2003, hashKnownHosts: true, user: "sysuser" });
  });

  test("missing ~/.ssh/config is no error; an explicit missing file is", () => {
    expect(resolveSshHost("nohost", { home: join(dir, "nohome"), systemConfigFile: null }).port).toBe(22);
    expect(() => resolveSshHost("nohost", { configFile: join(dir, "absent") })).toThrow(UserError);
  });

  test("destination user and port beat the config; knownHostsFile overrides UserKnownHostsFile", () => {
    const r = resolveSshHost("me@pi:2022", { configFile: cfg, knownHostsFile: "/tmp/kh-cli" });
    expect(r).toMatchObject({ user: "me", port: 2022, hostname: "raspberrypi.local", alias: "pi" });
    expect(r.userKnownHostsFiles).toEqual(["/tmp/kh-cli"]);
  });

  test("Match exec is never run", () => {
    const f = join(dir, "exec.conf");
    const marker = join(dir, "exec-ran");
    writeFileSync(f, `Match exec "touch ${marker}"\n  Port 2777\n`);
    const notes: string[] = [];
    const r = resolveSshHost("any", { configFile: f, log: (m) => notes.push(m) });
    expect(r.port).toBe(22);
    expect(Bun.file(marker).size).toBe(0);
    expect(notes.join()).toContain("Match exec");
  });
});

describe("parseDestination", () => {
  const cases: [string, ReturnType<typeof parseDestination>][] = [
    ["host", { host: "host", user: undefined, port: undefined }],
    ["user@host", { host: "host", user: "user", port: undefined }],
    ["host:2222", { host: "host", user: undefined, port: 2222 }],
    ["user@host:2222", { host: "host", user: "user", port: 2222 }],
    ["a@b@host", { host: "host", user: "a@b", port: undefined }],
    ["[::1]:22", { host: "::1", user: undefined, port: 22 }],
    ["root@[fe80::1]", { host: "fe80::1", user: "root", port: undefined }],
    ["::1", { host: "::1", user: undefined, port: undefined }],
    ["ssh://pi@board:2200", { host: "board", user: "pi", port: 2200 }],
  ];
  for (const [input, want] of cases) test(input, () => expect(parseDestination(input)).toEqual(want));
  for (const bad of ["", "host:abc", "@host", "host:0", "host:70000"]) {
    test(`refuses "${bad}"`, () => expect(() => parseDestination(bad)).toThrow(UserError));
  }
});

describe("resolveCiphers reads Ciphers as ssh does", () => {
  // The oracle: `ssh -G` resolves the same value against OpenSSH's own defaults and cipher list.
  const g = (spec?: string) => {
    const r = spawnSync("ssh", ["-G", "-F", "/dev/null", ...(spec === undefined ? [] : ["-o", `Ciphers=${spec}`]), "x"], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(r.stderr);
    return r.stdout.match(/^ciphers (.*)$/m)![1]!.split(",");
  };
  const opensshDefaults = g();
  const opensshSupported = spawnSync("ssh", ["-Q", "cipher"], { encoding: "utf8" }).stdout.trim().split("\n");
  for (const spec of ["aes256-ctr,aes128-gcm@openssh.com", "+aes128-cbc", "-aes*-ctr", "-*gcm*,chacha20-poly1305@openssh.com", "^aes256-gcm@openssh.com,aes128-ctr"]) {
    test(`Ciphers ${spec}`, () => {
      expect(resolveCiphers(spec, opensshDefaults, opensshSupported)).toEqual(g(spec));
    });
  }
  test("a config's Ciphers reaches the resolved host; what the client lacks is dropped", () => {
    const f = join(dir, "ciphers.conf");
    writeFileSync(f, "Host c\n  Ciphers ^chacha20-poly1305@openssh.com\n");
    expect(resolveSshHost("c", { configFile: f }).ciphers).toBe("^chacha20-poly1305@openssh.com");
    expect(resolveSshHost("pi", { configFile: cfg }).ciphers).toBeUndefined();
    expect(resolveCiphers("aes128-cbc,aes128-ctr", ["x"], ["aes128-ctr"])).toEqual(["aes128-ctr"]);
    expect(resolveCiphers("3des-cbc", ["x"], ["aes128-ctr"])).toEqual([]);
    expect(resolveCiphers(undefined, ["a", "b"], ["a"])).toEqual(["a", "b"]);
  });
});
