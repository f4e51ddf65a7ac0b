// known_hosts matching is hand-written: ssh-keygen (-F find, -H hash, -R remove) is the oracle.
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  addKnownHost,
  checkHostKey,
  fingerprint,
  hostFieldMatches,
  keyBlobType,
  knownHostName,
  knownKeyTypes,
  parseKnownHosts,
  removeKnownHost,
  replaceKnownHost,
} from "../../../src/target/known-hosts.ts";
import { keygen } from "../../fixtures/sshd/sshd.ts";

const dir = mkdtempSync(join(tmpdir(), "fl-kh-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const k1 = keygen(dir, "k1");
const k2 = keygen(dir, "k2");
const krsa = keygen(dir, "krsa", "rsa");
const blob = (pub: string) => Buffer.from(pub.split(" ")[1]!, "base64");
const K1 = k1.pub.split(" ").slice(0, 2).join(" ");
const K2 = k2.pub.split(" ").slice(0, 2).join(" ");
const KRSA = krsa.pub.split(" ").slice(0, 2).join(" ");

const plainFile = join(dir, "known_hosts");
writeFileSync(
  plainFile,
  [
    `board ${K1}`,
    `a.example,b.example,10.0.0.1 ${K1}`,
    `*.lan,!bad.lan ${K1}`,
    `[board]:2222 ${K2}`,
    `[127.0.0.1]:2200,127.0.0.1 ${K1}`,
    `Board2 ${K1}`,
    `h?st ${K1}`,
    `@revoked *.rev ${K2}`,
    `@cert-authority *.ca ${K1}`,
    "# comment",
    "",
    `  indented.example   ${KRSA} a comment`,
    `board ${KRSA}`,
  ].join("\n"),
);
const hashedFile = join(dir, "known_hosts_hashed");
copyFileSync(plainFile, hashedFile);
spawnSync("ssh-keygen", ["-q", "-H", "-f", hashedFile]);

const names = [
  "board", "a.example", "b.example", "10.0.0.1", "x.lan", "bad.lan", "[board]:2222", "[board]:2200",
  "[127.0.0.1]:2200", "127.0.0.1", "board2", "host", "hst", "hoost", "y.ca", "z.rev", "indented.example", "nowhere",
];

/** What ssh-keygen -F finds: "line MARKER" strings. */
function oracleFind(name: string, file: string): string[] {
  const r = spawnSync("ssh-keygen", ["-F", name, "-f", file], { encoding: "utf8" });
  return [...r.stdout.matchAll(/^# Host .* found: line (\d+) ?(\S*)$/gm)].map((m) => `${m[1]} ${m[2]}`.trim());
}

function ours(name: string, file: string): string[] {
  const marks: Record<string, string> = { "@revoked": "REVOKED", "@cert-authority": "CA" };
  return parseKnownHosts(readFileSync(file, "utf8"), file)
    .filter((e) => hostFieldMatches(e.hosts, name))
    .map((e) => `${e.line} ${e.marker ? marks[e.marker] : ""}`.trim());
}

describe("known_hosts matching agrees with ssh-keygen -F", () => {
  for (const file of [plainFile, hashedFile]) {
    for (const name of names) {
      test(`${file.endsWith("hashed") ? "hashed" : "plain"} ${name}`, () => {
        expect(ours(name, file)).toEqual(oracleFind(name, file));
      });
    }
  }
  test("the hashed fixture really is hashed", () => {
    expect(readFileSync(hashedFile, "utf8")).toContain("|1|");
    expect(readFileSync(hashedFile, "utf8")).not.toMatch(/^board /m);
  });
});

describe("checkHostKey", () => {
  test("known, changed, unknown-with-other-types, revoked, port form", () => {
    for (const files of [[plainFile], [hashedFile]]) {
      expect(checkHostKey({ host: "board", key: blob(K1), files }).status).toBe("known");
      expect(checkHostKey({ host: "BOARD", port: 22, key: blob(KRSA), files }).status).toBe("known");
      const changed = checkHostKey({ host: "board", key: blob(K2), files });
      expect(changed.status).toBe("changed");
      if (changed.status === "changed") expect(changed.entry.line).toBe(1);
      expect(checkHostKey({ host: "board", port: 2222, key: blob(K2), files }).status).toBe("known");
      expect(checkHostKey({ host: "board", port: 2222, key: blob(K1), files }).status).toBe("changed");
      expect(checkHostKey({ host: "board", port: 2200, key: blob(K1), files }).status).toBe("unknown");
      expect(checkHostKey({ host: "nowhere", key: blob(K1), files }).status).toBe("unknown");
      const other = checkHostKey({ host: "a.example", key: blob(KRSA), files });
      expect(other.status).toBe("unknown");
      if (other.status === "unknown") expect(other.otherKeys.map((e) => e.type)).toEqual(["ssh-ed25519"]);
      expect(checkHostKey({ host: "z.rev", key: blob(K2), files }).status).toBe("revoked");
      // @cert-authority lines are not host keys.
      expect(checkHostKey({ host: "y.ca", key: blob(K1), files }).status).toBe("unknown");
    }
    expect(checkHostKey({ host: "x.lan", key: blob(K1), files: [plainFile] }).status).toBe("known");
    expect(checkHostKey({ host: "bad.lan", key: blob(K1), files: [plainFile] }).status).toBe("unknown");
  });

  test("missing files are empty; user then global files both count", () => {
    expect(checkHostKey({ host: "board", key: blob(K1), files: [join(dir, "nope"), plainFile] }).status).toBe("known");
  });

  test("HostKeyAlias looks up the alias without a port", () => {
    expect(checkHostKey({ host: "elsewhere", port: 2222, alias: "board", key: blob(K1), files: [plainFile] }).status).toBe("known");
  });

  test("knownKeyTypes lists the types filed for a host", () => {
    expect(knownKeyTypes("board", 22, [hashedFile])).toEqual(["ssh-ed25519", "ssh-rsa"]);
    expect(knownKeyTypes("board", 2222, [plainFile])).toEqual(["ssh-ed25519"]);
    expect(knownKeyTypes("nowhere", 22, [plainFile])).toEqual([]);
  });
});

describe("writing", () => {
  test("addKnownHost writes lines ssh-keygen finds (plain and hashed, port form)", () => {
    const f = join(dir, "sub", "known_hosts_new");
    addKnownHost(f, { host: "New.Board", key: blob(K1) });
    addKnownHost(f, { host: "10.1.1.1", port: 2022, key: blob(K2), hash: true });
    const text = readFileSync(f, "utf8");
    expect(text.split("\n")[0]).toBe(`new.board ${K1}`);
    expect(text).toMatch(/^\|1\|[^|]+\|[^ ]+ ssh-ed25519 /m);
    expect(oracleFind("new.board", f)).toEqual(["1"]);
    expect(oracleFind("[10.1.1.1]:2022", f)).toEqual(["2"]);
    expect(oracleFind("10.1.1.1", f)).toEqual([]);
  });

  test("addKnownHost adds a newline to a file that lacks one", () => {
    const f = join(dir, "nonl");
    writeFileSync(f, `other ${K2}`);
    addKnownHost(f, { host: "board", key: blob(K1) });
    expect(parseKnownHosts(readFileSync(f, "utf8"), f).map((e) => e.hosts)).toEqual(["other", "board"]);
  });

  test("removeKnownHost removes what ssh-keygen -R removes", () => {
    for (const src of [plainFile, hashedFile]) {
      for (const name of ["board", "[board]:2222", "127.0.0.1", "x.lan"]) {
        const ours = join(dir, "rm-ours");
        const theirs = join(dir, "rm-theirs");
        copyFileSync(src, ours);
        copyFileSync(src, theirs);
        spawnSync("ssh-keygen", ["-R", name, "-f", theirs], { encoding: "utf8" });
        const m = /^\[(.*)\]:(\d+)$/.exec(name);
        removeKnownHost(ours, m ? m[1]! : name, m ? Number(m[2]) : 22);
        const keys = (f: string) => parseKnownHosts(readFileSync(f, "utf8"), f).map((e) => `${e.marker ?? ""} ${e.hosts} ${e.key}`);
        expect(keys(ours)).toEqual(keys(theirs));
      }
    }
  });

  test("replaceKnownHost swaps the key for host:port only", () => {
    const f = join(dir, "replace");
    copyFileSync(plainFile, f);
    const r = replaceKnownHost(f, { host: "board", key: blob(K2), hash: true });
    expect(r.removed).toBe(2);
    expect(checkHostKey({ host: "board", key: blob(K2), files: [f] }).status).toBe("known");
    expect(checkHostKey({ host: "board", port: 2222, key: blob(K2), files: [f] }).status).toBe("known");
    expect(readFileSync(`${f}.old`, "utf8")).toBe(readFileSync(plainFile, "utf8"));
  });
});

test("fingerprint and key type match ssh-keygen -l", () => {
  const r = spawnSync("ssh-keygen", ["-l", "-E", "sha256", "-f", `${k1.path}.pub`], { encoding: "utf8" });
  expect(r.stdout.split(" ")[1]).toBe(fingerprint(blob(K1)));
  expect(keyBlobType(blob(KRSA))).toBe("ssh-rsa");
  expect(knownHostName("Host", 22)).toBe("host");
  expect(knownHostName("::1", 2222)).toBe("[::1]:2222");
});
