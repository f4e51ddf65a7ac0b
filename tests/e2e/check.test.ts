/**
 * issue 4: `flash-live check` on a booted QEMU board, run as a user runs it (the CLI in a child
 * process, a HOME with ~/.ssh/config and known_hosts). A passing case and the refusing cases (image
 * too large, no /dev/shm room for ramfs, sudo needs a password, unreachable host), each read from
 * the table and from `--json`; and the promise that check changes nothing (same boot_id, /dev/shm
 * as before). The board's own tools (df, /proc/meminfo, the image's recorded sha256) are the oracles.
 * --explain (a passing check) and the unreachable host run the table themselves; the passing case
 * with an image and each refusal on a board run check once, with --json, and read the table the CLI
 * prints for that very report (formatCheck): each run costs the emulated board ~10 s of its one CPU.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Board, MiB, startBoard } from "../harness/board.ts";
import { ensureImage } from "../harness/build-image.ts";
import { type CliResult, UserHome } from "./_flash-live.ts";
import { type CheckReport, formatCheck } from "../../src/core/run-check.ts";

const homes: UserHome[] = [];
const scratch = mkdtempSync(join(tmpdir(), "flash-live-check-"));
afterAll(async () => {
  await shared?.stop();
  for (const h of homes.splice(0)) h.cleanup();
  rmSync(scratch, { recursive: true, force: true });
});

/** Every key `check --json` may print (the CheckReport type, schema 1). */
const KEYS = {
  top: ["schema", "ok", "target", "refusals", "notes", "board", "image", "plan"],
  target: ["name", "kind", "reachable", "auth", "cipher", "error"],
  board: ["hostname", "user", "sudo", "arch", "model", "kernel", "os", "init", "root", "partitions", "shmAvail", "memTotal", "tools", "servicesToStop"],
  root: ["device", "fstype", "disk", "diskSize", "diskModel", "problem"],
  image: ["path", "format", "fileSize", "rawSize", "sha256", "fitsDisk", "customization", "bmap", "record"],
  plan: ["mode", "reason", "codec", "transcode", "transport", "transportReason", "measured", "packed"],
};

/**
 * One board for the cases of this file, each with a HOME of its own: `check` changes nothing, and
 * every case proves that (expectUnchanged). A case that did not get that far marks the board used,
 * and the next case starts a fresh one.
 */
let shared: Board | undefined;
let used = false;
async function boardWithHome(opts: { user?: string } = {}): Promise<{ board: Board; home: UserHome }> {
  if (!shared || used || shared.state !== "running") {
    await shared?.stop();
    shared = undefined;
    shared = await startBoard({ image: "L" });
  }
  used = true;
  const board = shared;
  const home = new UserHome();
  homes.push(home);
  await home.trustBoard(board);
  if (opts.user) {
    // The same key logs in as `strict` too (BOARD_USERS); only the alias's User differs.
    writeFileSync(home.path(".ssh", "config"), `Host board\n  HostName 127.0.0.1\n  Port ${board.sshPort}\n  User ${opts.user}\n  IdentityFile ~/.ssh/id_ed25519\n`, { mode: 0o600 });
  }
  return { board, home };
}

/** What check must not change: the running system (boot_id) and /dev/shm. */
async function boardState(board: Board): Promise<{ bootId: string; shm: string }> {
  const r = await board.ssh("cat /proc/sys/kernel/random/boot_id; ls -A /dev/shm", { user: "root" });
  const [bootId, ...shm] = r.stdout.trim().split("\n");
  return { bootId: bootId!, shm: shm.join("\n") };
}

/** The board as before the case; then the next case may use it. */
async function expectUnchanged(board: Board, before: { bootId: string; shm: string }): Promise<void> {
  expect(await boardState(board)).toEqual(before);
  used = false;
}

function parseJson(r: CliResult): any {
  try {
    return JSON.parse(r.stdout);
  } catch {
    throw new Error(`check --json printed no JSON document (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
}

function expectOnlyKnownKeys(obj: Record<string, unknown>, known: string[], where: string): void {
  const unknown = Object.keys(obj).filter((k) => !known.includes(k));
  expect({ where, unknown }).toEqual({ where, unknown: [] });
  for (const [k, v] of Object.entries(obj)) expect({ where: `${where}.${k}`, isNull: v === null }).toEqual({ where: `${where}.${k}`, isNull: false });
}

/** A real image grown past the board's 512 MiB disk: L2 plus zeros, sparse, so it costs nothing. */
function oversizedRaw(l2raw: string, size: number): string {
  const out = join(scratch, `big-${size}.img`);
  copyFileSync(l2raw, out);
  truncateSync(out, size);
  return out;
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

describe("check", () => {
  test("passing: L board, L2.img.xz -> exit 0, table and JSON; nothing changed on the board", async () => {
    const { board, home } = await boardWithHome();
    const l2 = await ensureImage("L2", "xz");
    const before = await boardState(board);

    const j = await home.run(["check", "board", l2.xz, "--json"]);
    if (j.code !== 0) console.error(j.stdout, j.stderr);
    expect(j.code).toBe(0);
    const doc = parseJson(j);
    // The table the CLI prints for this very report (the --explain case runs a passing table itself).
    const table = formatCheck(doc as CheckReport);
    // The target is named as resolved from ~/.ssh/config: user@alias:port.
    expect(table).toMatch(new RegExp(`^target\\s+pi@board:${board.sshPort}\\s+reachable \\(publickey.*, chacha20-poly1305@openssh.com\\)$`, "m"));
    expect(table).toMatch(/^user\s+pi, sudo: without password$/m);
    expect(table).toMatch(/^board\s+.*x86_64/m);
    expect(table).toMatch(/^root\s+\/dev\/vda2 \(ext4\) on \/dev\/vda 512(\.0)? MiB/m);
    expect(table).toMatch(/^\/dev\/shm\s+\S+ \S+ free/m);
    expect(table).toMatch(/^\s+fits disk\s+yes$/m);
    expect(table).toMatch(/^mode\s+ramfs: remote default/m);
    // The transport was measured (issue 5): the link and the board's busybox on a sample, each plan predicted.
    expect(table).toMatch(/^transport\s+(as-is, xz|gzip, gz|lzo, lzo|xz, xz|raw, raw) on the wire: (fastest by measurement|as fast as \S+ by measurement \(within 10 %\) with fewer bytes on the wire \([^)]*\)): ~\d+ s to write \(.*\); link \d+\.\d MiB\/s, board writes as-is \d+\.\d MiB\/s, gzip /m);
    // A copy made on this side leaves L2's zero blocks here; sent as it is, the .xz carries them.
    if (/^transport\s+(gzip|lzo|xz|raw)/m.test(table)) expect(table).toMatch(/^\s+packed\s+[\d.]+ MiB of the image's bytes travel; [\d.]+ MiB of zero blocks are written from the board's \/dev\/zero$/m);
    else expect(table).not.toMatch(/^\s+packed/m);
    expect(table).toMatch(/^\s+record\s+flash-live\.txt on the new boot partition$/m);
    expect(table).toContain("OK: a flash would go ahead.");
    expect(table).not.toContain("REFUSED");

    // Stable keys: every documented top-level section is there for a reachable board and an image.
    expect(Object.keys(doc).sort()).toEqual([...KEYS.top].sort());
    expectOnlyKnownKeys(doc, KEYS.top, "$");
    expectOnlyKnownKeys(doc.target, KEYS.target, "target");
    expectOnlyKnownKeys(doc.board, KEYS.board, "board");
    expectOnlyKnownKeys(doc.board.root, KEYS.root, "board.root");
    expectOnlyKnownKeys(doc.image, KEYS.image, "image");
    expectOnlyKnownKeys(doc.plan, KEYS.plan, "plan");
    expect(doc).toMatchObject({ schema: 1, ok: true, refusals: [], target: { name: `pi@board:${board.sshPort}`, kind: "ssh", reachable: true, cipher: "chacha20-poly1305@openssh.com" } });
    const hostname = (await board.ssh("hostname")).stdout.trim();
    expect(doc.board).toMatchObject({ user: "pi", sudo: "ok", arch: "x86_64", hostname });
    expect(doc.board.root).toMatchObject({ device: "/dev/vda2", fstype: "ext4", disk: "/dev/vda", diskSize: 512 * MiB });
    expect(doc.board.partitions.map((p: { name: string }) => p.name)).toEqual(["/dev/vda1", "/dev/vda2"]);
    expect(doc.plan).toMatchObject({ mode: "ramfs" });
    const m = doc.plan.measured;
    expect(m.rates.link).toBeGreaterThan(0);
    expect(Object.keys(m.rates.boardWrite).sort()).toEqual(["as-is", "gzip", "lzo", "raw", "xz"]);
    // The plan is the fastest prediction, or one within 10 % of it with fewer bytes on the wire; the
    // codec on the wire follows from it.
    type Est = { transport: string; seconds: number; wireBytes: number; excluded?: string };
    const usable = (m.estimates as Est[]).filter((e) => !e.excluded);
    const fastest = Math.min(...usable.map((e) => e.seconds));
    const best = usable.filter((e) => e.seconds <= fastest * 1.1).sort((a, b) => a.wireBytes - b.wireBytes || a.seconds - b.seconds)[0]!;
    expect(doc.plan.transport).toBe(best.transport);
    expect(doc.plan.codec).toBe({ "as-is": "xz", gzip: "gz", lzo: "lzo", xz: "xz", raw: "raw" }[best.transport]);
    console.log(`[check e2e] transport measured: ${doc.plan.transportReason}`);
    // Asked for: no measurement.
    const asked = parseJson(await home.run(["check", "board", l2.xz, "--json", "--transport", "gzip"]));
    expect(asked.plan).toMatchObject({ transport: "gzip", codec: "gz", transcode: true, transportReason: "asked for (--transport)" });
    expect(asked.plan.measured).toBeUndefined();
    // Oracles: the image's recorded size and sha256, and the board's own df and /proc/meminfo.
    expect(doc.image).toMatchObject({ path: l2.xz, format: "xz", fileSize: l2.sizes.xz, rawSize: l2.sizes.raw, sha256: l2.sha256, fitsDisk: true });
    const df = (await board.ssh("df -P /dev/shm | awk 'NR==2 {print $4}'; awk '/^MemTotal:/ {print $2}' /proc/meminfo")).stdout.trim().split("\n").map(Number);
    expect(Math.abs(doc.board.shmAvail - df[0]! * 1024)).toBeLessThan(4 * MiB);
    expect(doc.board.memTotal).toBe(df[1]! * 1024);

    // check without an image: the board half only, still exit 0.
    const b = await home.run(["check", "board", "--json"]);
    expect(b.code).toBe(0);
    const bdoc = parseJson(b);
    expect(bdoc).toMatchObject({ schema: 1, ok: true });
    expect(bdoc.image).toBeUndefined();
    expect(bdoc.plan).toBeUndefined();

    await expectUnchanged(board, before);
  });

  test("refuses an image larger than the disk: exit 1, both sizes in table and JSON", async () => {
    const { board, home } = await boardWithHome();
    const l2 = await ensureImage("L2", "xz");
    const big = oversizedRaw(l2.raw, 600 * MiB);
    const before = await boardState(board);

    const j = await home.run(["check", "board", big, "--json"]);
    expect(j.code).toBe(1);
    const doc = parseJson(j);
    const table = formatCheck(doc as CheckReport);
    expect(table).toMatch(/^\s+fits disk\s+NO$/m);
    expect(table).toContain("REFUSED");
    expect(table).toContain("the image is larger than the disk");
    expect(table).toContain(`${600 * MiB} bytes`);
    expect(table).toContain(`${512 * MiB} bytes`);
    expect(doc).toMatchObject({ schema: 1, ok: false, image: { format: "raw", rawSize: 600 * MiB, fitsDisk: false } });
    // 600 MiB raw does not fit the 484 MiB /dev/shm either: that is a second, separate refusal.
    const tooLarge = doc.refusals.filter((r: string) => r.includes("the image is larger than the disk"));
    expect(tooLarge).toHaveLength(1);
    expect(tooLarge[0]).toContain(`${600 * MiB} bytes`);
    expect(tooLarge[0]).toContain(`${512 * MiB} bytes`);
    expect(tooLarge[0]).toContain("/dev/vda");
    await expectUnchanged(board, before);
  });

  test("refuses when /dev/shm has no room for the ramfs copy: exit 1, numbers in table and JSON", async () => {
    const { board, home } = await boardWithHome();
    const l2 = await ensureImage("L2", "xz");
    // Leave ~40 MiB of /dev/shm free: less than the 65 MiB .xz plus the 64 MiB margin.
    const avail = Number((await board.ssh("df -P /dev/shm | awk 'NR==2 {print $4}'")).stdout.trim()) * 1024;
    await board.ssh(`fallocate -l ${avail - 40 * MiB} /dev/shm/filler`, { user: "root" });
    try {
      const before = await boardState(board);
      const j = await home.run(["check", "board", l2.xz, "--json"]);
      expect(j.code).toBe(1);
      const doc = parseJson(j);
      const table = formatCheck(doc as CheckReport);
      expect(table).toContain("REFUSED");
      expect(table).toContain("does not fit in the board's RAM for ramfs mode");
      expect(table).toContain("free in /dev/shm");
      expect(table).toContain("--stream");
      // Refused before the image's content was read: what only that would tell is said to be unknown.
      expect(table).toMatch(/^ {2}record +not checked: refused before the image was read$/m);
      expect(table).toMatch(/^ {2}customize +not checked: refused before the image was read$/m);
      expect(doc).toMatchObject({ schema: 1, ok: false, image: { fitsDisk: true }, plan: { mode: "ramfs" } });
      expect(doc.board.shmAvail).toBeLessThan(48 * MiB);
      expect(doc.refusals).toHaveLength(1);
      expect(doc.refusals[0]).toContain("does not fit in the board's RAM for ramfs mode");
      expect(await boardState(board)).toEqual(before);

      // The same board passes with --stream: the refusal is about RAM, not the board.
      const s = await home.run(["check", "board", l2.xz, "--stream", "--json"]);
      expect(s.code).toBe(0);
      expect(parseJson(s)).toMatchObject({ ok: true, plan: { mode: "stream" } });
    } finally {
      await board.ssh("rm -f /dev/shm/filler", { user: "root" });
    }
    // The filler is gone: /dev/shm as before, the next case may use the board.
    used = false;
  });

  test("refuses when sudo needs a password (user strict): exit 1, reason in table and JSON", async () => {
    const { board, home } = await boardWithHome({ user: "strict" });
    const l2 = await ensureImage("L2", "xz", "gz");
    const before = await boardState(board);

    const j = await home.run(["check", "board", l2.xz, "--json"]);
    expect(j.code).toBe(1);
    const doc = parseJson(j);
    const table = formatCheck(doc as CheckReport);
    expect(table).toMatch(/^user\s+strict, sudo: password$/m);
    expect(table).toContain("REFUSED");
    expect(table).toContain("user strict needs a password for sudo");
    expect(table).toContain("NOPASSWD");
    expect(doc).toMatchObject({ schema: 1, ok: false, target: { name: `strict@board:${board.sshPort}`, reachable: true }, board: { user: "strict", sudo: "password" } });
    expect(doc.refusals).toHaveLength(1);
    expect(doc.refusals[0]).toContain("user strict needs a password for sudo");
    // A .gz has no size index: the board's refusal comes before the image is read at all (no
    // sha256), instead of after decompressing all of it.
    const g = await home.run(["check", "board", l2.gz, "--json"]);
    expect(g.code).toBe(1);
    const gdoc = parseJson(g);
    expect(gdoc.refusals).toEqual(doc.refusals);
    expect(gdoc.image.format).toBe("gzip");
    expect(gdoc.image.sha256).toBeUndefined();
    await expectUnchanged(board, before);
  });

  test("unreachable host (closed port): exit 1, clear message, reachable: false", async () => {
    const home = new UserHome();
    homes.push(home);
    const port = await closedPort();
    writeFileSync(home.path(".ssh", "config"), `Host gone\n  HostName 127.0.0.1\n  Port ${port}\n  User pi\n`, { mode: 0o600 });
    const l2 = await ensureImage("L2", "xz");

    const t = await home.run(["check", "gone", l2.xz], { timeoutMs: 120_000 });
    expect(t.code).toBe(1);
    expect(t.stdout).toMatch(/^target\s+gone\s+UNREACHABLE$/m);
    expect(t.stdout).toMatch(new RegExp(`^error\\s+.*(refused|ECONNREFUSED).*`, "mi"));
    expect(t.stdout).toContain(String(port));
    expect(t.stdout).toContain("REFUSED");

    const j = await home.run(["check", "gone", "--json"], { timeoutMs: 120_000 });
    expect(j.code).toBe(1);
    const doc = parseJson(j);
    expect(doc).toMatchObject({ schema: 1, ok: false, target: { name: "gone", kind: "ssh", reachable: false } });
    expect(doc.target.error).toMatch(/refused/i);
    expect(doc.refusals).toEqual([doc.target.error]);
    expect(doc.board).toBeUndefined();
  });

  test("--explain names the layer of each value: config file, env var, flag", async () => {
    const { board, home } = await boardWithHome();
    const before = await boardState(board);
    const cfg = home.path("flash-live.config.json");
    writeFileSync(cfg, `${JSON.stringify({ hostname: "from-file", timezone: "Europe/Berlin", services: ["myapp"] }, null, 2)}\n`);

    const kh = home.path(".ssh", "known_hosts");
    const t = await home.run(["check", "board", "--explain", "--stream", "--known-hosts", kh], { env: { FLASH_LIVE_TIMEZONE: "Asia/Tokyo", FLASH_LIVE_SERVICES: "+db-*" } });
    if (t.code !== 0) console.error(t.stdout, t.stderr);
    expect(t.code).toBe(0);
    const explain = t.stdout.slice(t.stdout.indexOf("configuration:"));
    expect(explain).toMatch(/^key\s+value\s+from$/m);
    expect(explain).toMatch(new RegExp(`^hostname\\s+from-file\\s+${escapeRe(cfg)}:2$`, "m"));
    expect(explain).toMatch(/^timezone\s+Asia\/Tokyo\s+env FLASH_LIVE_TIMEZONE$/m);
    // Named as typed: --stream (not the key's name), --known-hosts.
    expect(explain).toMatch(/^mode\s+stream\s+flag --stream$/m);
    expect(explain).toMatch(new RegExp(`^knownHostsFile\\s+${escapeRe(kh)}\\s+flag --known-hosts$`, "m"));
    expect(explain).toMatch(/^verify\s+true\s+default$/m);
    // An appended list names both layers it came from.
    const services = explain.split("\n").find((l) => l.startsWith("services"));
    expect(services).toContain("myapp");
    expect(services).toContain("db-*");
    expect(services).toContain(cfg);
    expect(services).toContain("FLASH_LIVE_SERVICES");
    await expectUnchanged(board, before);
  });
});
