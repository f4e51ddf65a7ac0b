import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { verify } from "unixcrypt";
import { CancelledError, UserError } from "../../../src/errors.ts";
import { parseSeedConf } from "../../../src/config/seed-conf.ts";
import { loadFlashConfig } from "../../../src/config/load.ts";
import { resolveCustomization } from "../../../src/customize/resolve.ts";
import { checkHostname, checkTimezone, checkUser, checkWifiPassword, readHostTimezone, runConfigInit } from "../../../src/config/init.ts";

type Prompts = NonNullable<Parameters<typeof runConfigInit>[0]["prompts"]>;

const ROOT = resolve(import.meta.dir, "../../..");
const BUN = process.execPath;
const RUNNER = join(ROOT, "tests/fixtures/config/run-config-init.ts");
const CANCEL = Symbol("cancel");

const tmp = mkdtempSync(join(tmpdir(), "flash-live-config-init-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
/** A fresh cwd and home with two public keys. */
function sandbox() {
  const dir = join(tmp, `case-${n++}`);
  mkdirSync(join(dir, "home/.ssh"), { recursive: true });
  // Real keys: the customization resolver checks that they parse as public keys.
  for (const name of ["id_ed25519", "work_ed25519"]) {
    const r = Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", join(dir, "home/.ssh", name)]);
    if (r.exitCode !== 0) throw new Error(r.stderr.toString());
  }
  return { cwd: dir, home: join(dir, "home") };
}

/**
 * Scripted prompts: each call must match the next expected [kind, message pattern]; its answer
 * goes through the prompt's own `validate`, like clack would, and a rejected answer fails the test.
 */
function scripted(script: [kind: string, message: RegExp, answer: unknown][]) {
  const asked: string[] = [];
  const logs: string[] = [];
  const next = (kind: string) => async (opts: { message: string; validate?: (v: unknown) => unknown }) => {
    const step = script.shift();
    if (!step) throw new Error(`unexpected ${kind} prompt: ${opts.message}`);
    const [k, re, answer] = step;
    asked.push(opts.message);
    expect(`${kind}: ${opts.message}`).toMatch(new RegExp(`^${k}: .*${re.source}`));
    if (answer !== CANCEL && opts.validate) expect(opts.validate(answer)).toBeUndefined();
    return answer;
  };
  const prompts = {
    intro: () => {},
    outro: (m: string) => logs.push(m),
    note: () => {},
    log: { info: (m: string) => logs.push(m), warn: (m: string) => logs.push(m) },
    text: next("text"),
    password: next("password"),
    confirm: next("confirm"),
    select: next("select"),
    multiselect: next("multiselect"),
    isCancel: (v: unknown) => v === CANCEL,
  } as unknown as Prompts;
  return { prompts, asked, logs, remaining: script };
}

const modeOf = (f: string) => statSync(f).mode & 0o777;

describe("runConfigInit (scripted prompts)", () => {
  test("hash stored as password-hash (checked with openssl), keys as ~/ paths, mode 0600, parses as seed conf", async () => {
    const { cwd, home } = sandbox();
    const s = scripted([
      ["text", /Hostname/, "myboat"],
      ["text", /User name/, "mairas"],
      ["password", /Password for mairas/, "sécret 123"],
      ["password", /again/, "sécret 123"],
      ["select", /Store the password/, "hash"],
      ["multiselect", /SSH public keys/, ["~/.ssh/id_ed25519.pub"]],
      ["confirm", /Wi-Fi/, false],
      ["text", /Timezone/, "Europe/Helsinki"],
    ]);
    const r = await runConfigInit({ file: "boat.conf", cwd, home, prompts: s.prompts, interactive: true, env: {} });
    expect(s.remaining).toEqual([]);
    expect(r.file).toBe(join(cwd, "boat.conf"));
    expect(modeOf(r.file)).toBe(0o600);
    const text = readFileSync(r.file, "utf8");
    const { config } = parseSeedConf(text, r.file);
    expect(config).toMatchObject({ hostname: "myboat", user: "mairas", sshKeys: ["~/.ssh/id_ed25519.pub"], timezone: "Europe/Helsinki" });
    expect(config.password).toBeUndefined();
    expect(text).not.toContain("sécret");
    const hash = config.passwordHash!;
    expect(hash).toMatch(/^\$6\$[^$]+\$[./0-9A-Za-z]{86}$/);
    expect(verify("sécret 123", hash)).toBe(true);
    // Oracle: OpenSSL computes the same SHA-512 crypt from the same salt.
    const salt = hash.split("$")[2]!;
    const openssl = Bun.spawnSync(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], { stdin: Buffer.from("sécret 123\n") });
    expect(openssl.stdout.toString().trim()).toBe(hash);
    expect(readdirSync(cwd).filter((f) => f.includes(".tmp"))).toEqual([]);
  });

  test("plaintext on request; Wi-Fi with awkward characters round-trips; empty timezone is left out", async () => {
    const { cwd, home } = sandbox();
    const wifiPassword = "  spaces # and = signs ";
    const s = scripted([
      ["text", /Hostname/, "boat-2"],
      ["text", /User name/, "pi"],
      ["password", /Password for pi/, "p=w #1"],
      ["password", /again/, "p=w #1"],
      ["select", /Store the password/, "plain"],
      ["multiselect", /SSH public keys/, []],
      ["confirm", /Wi-Fi/, true],
      ["text", /SSID/, "Café net"],
      ["password", /Wi-Fi password/, wifiPassword],
      ["text", /country/, "fi "],
      ["text", /Timezone/, ""],
    ]);
    const r = await runConfigInit({ file: join(cwd, "w.conf"), home, prompts: s.prompts, interactive: true, env: { LANG: "fi_FI.UTF-8" } });
    const { config } = parseSeedConf(readFileSync(r.file, "utf8"), r.file);
    expect(config).toEqual({
      hostname: "boat-2",
      user: "pi",
      password: "p=w #1",
      wifiSsid: "Café net",
      wifiPassword,
      wifiCountry: "FI",
    });
  });

  test("no user: no password questions; no ~/.ssh keys: says so", async () => {
    const { cwd } = sandbox();
    const s = scripted([
      ["text", /Hostname/, "solo"],
      ["text", /User name/, ""],
      ["confirm", /Wi-Fi/, false],
      ["text", /Timezone/, "UTC"],
    ]);
    const r = await runConfigInit({ file: "x.conf", cwd, home: join(cwd, "nohome"), prompts: s.prompts, interactive: true, env: {} });
    expect(r.config).toEqual({ hostname: "solo", timezone: "UTC" });
    expect(s.logs.join("\n")).toMatch(/No .*\.ssh\/\*\.pub found/);
  });

  test("existing file: asks; No leaves it untouched (exit 1)", async () => {
    const { cwd, home } = sandbox();
    const file = join(cwd, "flash-live.conf");
    writeFileSync(file, "hostname=keep\n");
    const s = scripted([["confirm", /exists. Overwrite/, false]]);
    const e = await runConfigInit({ file: "flash-live.conf", cwd, home, prompts: s.prompts, interactive: true }).catch((x) => x);
    expect(e).toBeInstanceOf(CancelledError);
    expect(e.exitCode).toBe(1);
    expect(readFileSync(file, "utf8")).toBe("hostname=keep\n");
  });

  test("existing 0644 file: Yes replaces it with a 0600 file", async () => {
    const { cwd, home } = sandbox();
    const file = join(cwd, "c.conf");
    writeFileSync(file, "hostname=old\n");
    chmodSync(file, 0o644);
    const s = scripted([
      ["confirm", /exists. Overwrite/, true],
      ["text", /Hostname/, "new"],
      ["text", /User name/, ""],
      ["multiselect", /SSH public keys/, []],
      ["confirm", /Wi-Fi/, false],
      ["text", /Timezone/, ""],
    ]);
    await runConfigInit({ file, cwd, home, prompts: s.prompts, interactive: true, env: {} });
    expect(modeOf(file)).toBe(0o600);
    expect(readFileSync(file, "utf8")).toMatch(/^hostname=new$/m);
  });

  test("cancel at any prompt: CancelledError, nothing written", async () => {
    const { cwd, home } = sandbox();
    const s = scripted([
      ["text", /Hostname/, "x"],
      ["text", /User name/, "u"],
      ["password", /Password for u/, CANCEL],
    ]);
    await expect(runConfigInit({ file: "n.conf", cwd, home, prompts: s.prompts, interactive: true, env: {} })).rejects.toBeInstanceOf(CancelledError);
    expect(readdirSync(cwd)).toEqual(["home"]);
  });

  test("not interactive: UserError with exit code 2 and the usage as hint", async () => {
    const e = await runConfigInit({ file: "x.conf", interactive: false, usage: "USAGE init [FILE]" }).catch((x) => x);
    expect(e).toBeInstanceOf(UserError);
    expect(e.exitCode).toBe(2);
    expect(e.hint).toBe("USAGE init [FILE]");
  });

  test("validators refuse bad input", async () => {
    for (const bad of ["", "-boat", "boat-", "a_b", "a.b", "x".repeat(64)]) expect(checkHostname(bad)).toBeDefined();
    for (const ok of ["b", "myboat", "boat-2", "x".repeat(63)]) expect(checkHostname(ok)).toBeUndefined();
    for (const bad of ["root", "Bad", "a b", "1abc", "x".repeat(33)]) expect(checkUser(bad)).toBeDefined();
    expect(checkUser("mairas")).toBeUndefined();
    expect(checkTimezone("Mars/Olympus")).toBeDefined();
    expect(checkTimezone("Europe/Helsinki")).toBeUndefined();
    for (const bad of ["short", "x".repeat(64), "x".repeat(7), "tab\there!", "ääääääää"]) expect(checkWifiPassword(bad)).toBeDefined();
    for (const ok of ["12345678", "x".repeat(63), "a".repeat(64)]) expect(checkWifiPassword(ok)).toBeUndefined();
  });

  test("the second password prompt accepts only the same password", async () => {
    const { cwd, home } = sandbox();
    let again: ((v: string) => unknown) | undefined;
    const s = scripted([
      ["text", /Hostname/, "b"],
      ["text", /User name/, "u"],
    ]);
    (s.prompts as any).password = async (o: { message: string; validate: (v: string) => unknown }) => {
      if (o.message === "Password again") {
        again = o.validate;
        return CANCEL;
      }
      return "first";
    };
    await expect(runConfigInit({ file: "p.conf", cwd, home, prompts: s.prompts, interactive: true, env: {} })).rejects.toBeInstanceOf(CancelledError);
    expect(again!("second")).toMatch(/differ/);
    expect(again!("first")).toBeUndefined();
  });
});

// --- the real command in a pseudo-terminal (Bun.spawn `terminal`), real @clack/prompts ---

const ENTER = "\r";
const stripAnsi = (s: string) => s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "").replace(/\x1b\][^\x07]*\x07/g, "");

function startPty(args: string[], cwd: string, home: string) {
  let out = "";
  const proc = Bun.spawn([BUN, RUNNER, ...args], {
    cwd,
    env: { PATH: process.env.PATH, HOME: home, USER: "skipper", TERM: "xterm-256color", LANG: "en_GB.UTF-8" },
    terminal: {
      cols: 120,
      rows: 50,
      data(_t, d) {
        out += new TextDecoder().decode(d);
      },
    },
  });
  let seenUpTo = 0;
  return {
    proc,
    output: () => stripAnsi(out),
    /** Waits until `text` appears in output not yet consumed, then sends `keys`. */
    async answer(text: string | RegExp, keys: string) {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const rest = stripAnsi(out).slice(seenUpTo);
        const m = typeof text === "string" ? rest.indexOf(text) : rest.search(text);
        if (m >= 0) {
          seenUpTo += m + 1;
          break;
        }
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${text}; output:\n${stripAnsi(out)}`);
        await Bun.sleep(20);
      }
      // clack renders the prompt before it listens for keys; give it a moment.
      await Bun.sleep(60);
      proc.terminal!.write(keys);
    },
  };
}

describe("config init through a pty", () => {
  test("answers produce a 0600 seed file that parses; host defaults used for user and timezone", async () => {
    const { cwd, home } = sandbox();
    const t = startPty(["out.conf"], cwd, home);
    await t.answer("Hostname", `ptyboat${ENTER}`);
    await t.answer("User name", ENTER); // initial value: $USER (skipper)
    await t.answer("Password for skipper", `hunter2!${ENTER}`);
    await t.answer("Password again", `hunter2!${ENTER}`);
    await t.answer("Store the password as", ENTER); // hash
    await t.answer("SSH public keys", ENTER); // all preselected
    await t.answer("Configure Wi-Fi?", "y");
    await t.answer("SSID", `Harbour 5G${ENTER}`);
    await t.answer("Wi-Fi password", `12345678${ENTER}`);
    await t.answer("Wi-Fi country", ENTER); // from LANG=en_GB
    await t.answer("Timezone", ENTER); // the host's
    expect(await t.proc.exited).toBe(0);
    const out = t.output();
    expect(out).not.toContain("hunter2");
    const file = join(cwd, "out.conf");
    expect(modeOf(file)).toBe(0o600);
    const { config } = parseSeedConf(readFileSync(file, "utf8"), file);
    expect(config).toMatchObject({
      hostname: "ptyboat",
      user: "skipper",
      sshKeys: ["~/.ssh/id_ed25519.pub", "~/.ssh/work_ed25519.pub"],
      wifiSsid: "Harbour 5G",
      wifiPassword: "12345678",
      wifiCountry: "GB",
    });
    expect(config.timezone).toBe(readHostTimezone());
    expect(verify("hunter2!", config.passwordHash!)).toBe(true);

    // What `flash --config out.conf` does with it: the config layers load it and the customization
    // resolver accepts it (key files read, hash kept, Wi-Fi PSK derived).
    const loaded = await loadFlashConfig({ cwd, configFile: "out.conf", env: {}, flags: {} });
    expect(loaded.sources.hostname).toMatchObject({ layer: "file", file, line: 3 });
    const resolved = resolveCustomization(loaded.config, { home, cwd })!;
    expect(resolved.hostname).toBe("ptyboat");
    expect(resolved.user?.passwordHash).toBe(config.passwordHash);
    expect(resolved.user?.sshKeys.map((k) => k.split(" ")[2])).toEqual(["id_ed25519", "work_ed25519"]);
    expect(resolved.wifi?.ssid).toBe("Harbour 5G");
  });

  test("Ctrl-C cancels cleanly: exit 1, nothing written", async () => {
    const { cwd, home } = sandbox();
    const t = startPty([], cwd, home);
    await t.answer("Hostname", `half${ENTER}`);
    await t.answer("User name", "\x03");
    expect(await t.proc.exited).toBe(1);
    expect(t.output()).toContain("Cancelled");
    expect(readdirSync(cwd)).toEqual(["home"]);
  });

  test("refuses to overwrite without asking: answering No keeps the file", async () => {
    const { cwd, home } = sandbox();
    writeFileSync(join(cwd, "flash-live.conf"), "hostname=keep\n");
    const t = startPty([], cwd, home);
    await t.answer("Overwrite it?", "n");
    expect(await t.proc.exited).toBe(1);
    expect(readFileSync(join(cwd, "flash-live.conf"), "utf8")).toBe("hostname=keep\n");
  });

  test("no TTY: usage and exit 2", () => {
    const { cwd, home } = sandbox();
    const r = Bun.spawnSync([BUN, RUNNER, "x.conf"], { cwd, env: { PATH: process.env.PATH, HOME: home }, stdin: "ignore" });
    expect(r.exitCode).toBe(2);
    const all = stripAnsi(r.stdout.toString() + r.stderr.toString());
    expect(all).toContain("needs a terminal");
    expect(all).toMatch(/USAGE.*flash-live config init.*\[FILE\]/);
    expect(readdirSync(cwd)).toEqual(["home"]);
  });
});
