/**
 * flash-live's benchmark (issue 5, "Benchmarks"). In ONE run, on one board kind and one image: the
 * seed's two by-hand approaches as baselines, each flash-live mode, and the limits measured on the
 * same kind of board, printed as one markdown table and appended to bench/results-<date>.md.
 *
 *   bun bench/flash.ts [--image L2|B] [--cases id,id,...] [--extra] [--out FILE]
 *
 * --image L2 (default) flashes L2.img.xz (320 MiB raw) onto light L boards; --image B flashes
 * B.img.xz (1 GiB raw, the issue's target) onto systemd A boards. bench/README.md explains every
 * number. Not a test: nothing here passes or fails, it measures.
 *
 * Safety: every destructive command (dd onto a disk, fsfreeze, sysrq) runs inside a QEMU board of
 * tests/harness, over OpenSSH to the 127.0.0.1 port QEMU forwards to that board, prefixed by the
 * harness's marker guard (tests/harness/ssh.ts `guarded`): on a machine without the board marker it
 * exits before running anything. On this machine the bench only reads image files and writes files
 * in its own temp dir.
 */
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, appendFileSync, readFileSync, readSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { shellQuote } from "../src/util/shell.ts";
import { UserHome } from "../tests/e2e/_flash-live.ts";
import { type Board, type BoardImage, ensureImage, type ImageName, MiB, startBoard } from "../tests/harness/index.ts";
import { IMAGES } from "../tests/harness/recipes.ts";
import { guarded, sshBanner } from "../tests/harness/ssh.ts";

process.env.FLASH_LIVE_HARNESS = "1";

const CLI = resolve(import.meta.dir, "../src/cli.ts");
const MB = 1e6;

/** Target image -> the board it is flashed onto (same flavour, so the board can run it afterwards). */
const PAIRS: Record<string, { board: ImageName; image: ImageName }> = {
  L2: { board: "L", image: "L2" },
  B: { board: "A", image: "B" },
};

const CORE_CASES = ["limits", "scp-dd", "xzcat-ssh", "ramfs", "ramfs-noverify", "stream", "rss"] as const;
const EXTRA_CASES = ["stream-asis", "stream-gzip", "stream-rawwire", "stream-xz", "stream-lzo", "ramfs-gz", "ramfs-zst", "stream-raw"] as const;
type CaseId = (typeof CORE_CASES)[number] | (typeof EXTRA_CASES)[number];

const { values: opt } = parseArgs({
  options: {
    image: { type: "string", default: "L2" },
    cases: { type: "string" },
    extra: { type: "boolean", default: false },
    out: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (opt.help) {
  console.log(`usage: bun bench/flash.ts [--image ${Object.keys(PAIRS).join("|")}] [--cases ${[...CORE_CASES, ...EXTRA_CASES].join(",")}] [--extra] [--out FILE]`);
  process.exit(0);
}
const pair = PAIRS[opt.image!];
if (!pair) throw new Error(`--image must be one of ${Object.keys(PAIRS).join(", ")}`);
const cases: CaseId[] = opt.cases
  ? (opt.cases.split(",").map((c) => c.trim()) as CaseId[])
  : [...CORE_CASES.slice(0, -1), ...(opt.extra ? EXTRA_CASES : []), "rss"];
for (const c of cases) if (![...CORE_CASES, ...EXTRA_CASES].includes(c)) throw new Error(`unknown case ${c}`);

const work = mkdtempSync(join(tmpdir(), "flash-live-bench-"));
const logDir = join(work, "logs");
mkdirSync(logDir);
const say = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);

// --- measurements -------------------------------------------------------------------------------

interface Row {
  id: CaseId;
  label: string;
  kind: "baseline" | "flash-live";
  /** Bytes that crossed the link (flash-live: its own "N sent", as printed). */
  wireBytes?: number;
  wireText?: string;
  /** Start -> the board resets (baselines: the SSH session drops; flash-live: "rebooting" line). */
  toReboot?: number;
  /** Start -> the board answers with a new boot_id (flash-live waits for it itself). */
  back?: number;
  rss?: number;
  cpu?: number;
  /** flash-live: where the time went, from its output's timestamps. */
  phases?: string;
  ok: boolean;
  note?: string;
  /** Host 1-min load average at the start and the end of the case (2 cores; other sessions' boards). */
  load?: string;
}

interface Limits {
  /** A login + `true` over OpenSSH, seconds (what every by-hand step pays once). */
  loginS?: number;
  /** `cat > /dev/null` on the board fed 256 MiB of random data, timed on the board. */
  linkMBs?: number;
  /** The compressed image copied by scp into /dev/shm (a second link figure, with scp's own costs). */
  scpMBs?: number;
  /** busybox xzcat of the image in /dev/shm to /dev/null, raw bytes out per second. */
  decompMBs?: number;
  /** dd if=/dev/zero of=DISK bs=4M conv=fsync, the image's size, as reported by GNU dd. */
  diskMBs?: number;
  load?: string;
}

const rows: Row[] = [];
const limits: Limits = {};
const rssChecks: { label: string; rawBytes: number; rss: number; seconds: number; cpu: number; scanned: boolean; timeline: string; note?: string }[] = [];
const startedAt = new Date();
const done: CaseId[] = [];
let current: CaseId | undefined;
/** The board's CPU as its kernel names it (the harness picks QEMU's -cpu model). */
let boardCpu = "";
let runSeconds = 0;
const t0Run = performance.now();
const loadBefore = loadavg();

const target = await ensureImage(pair.image, "xz", "gz", "zst");
await ensureImage(pair.board);
const randomFile = join(work, "random-256m");

async function main(): Promise<void> {
  // A long run (the 1 GiB case takes ~40 min) must not lose what it measured when it is stopped:
  // state.json after every case, and a report of the finished cases on SIGTERM/SIGINT.
  for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
    process.on(sig, () => {
      say(`${sig}: writing the report of the finished cases`);
      void publish(`interrupted by ${sig} during ${current ?? "?"}`).finally(() => process.exit(128 + ({ SIGTERM: 15, SIGINT: 2, SIGHUP: 1 } as const)[sig]));
    });
  }
  try {
    for (const c of cases) {
      current = c;
      say(`--- ${c} (${((performance.now() - t0Run) / 1000).toFixed(0)} s into the run)`);
      const load0 = loadavg()[0]!;
      try {
        await runCase(c);
      } catch (e) {
        say(`${c} failed: ${(e as Error).stack ?? e}`);
        if (c !== "limits" && c !== "rss") rows.push({ id: c, label: labelOf(c), kind: c === "scp-dd" || c === "xzcat-ssh" ? "baseline" : "flash-live", ok: false, note: firstLine((e as Error).message) });
      }
      const row = rows.find((r) => r.id === c);
      if (row) row.load = `${load0.toFixed(1)}→${loadavg()[0]!.toFixed(1)}`;
      if (c === "limits") limits.load = `${load0.toFixed(1)}→${loadavg()[0]!.toFixed(1)}`;
      done.push(c);
      writeFileSync(join(work, "state.json"), `${JSON.stringify({ done, rows, limits, rssChecks, boardCpu }, null, 2)}\n`);
    }
    current = undefined;
  } finally {
    rmSync(randomFile, { force: true });
    rmSync(join(work, "big.img"), { force: true });
  }

  await publish();
}

let published = false;
async function publish(interrupted?: string): Promise<void> {
  if (published) return;
  published = true;
  runSeconds = (performance.now() - t0Run) / 1000;
  const report = await renderReport(interrupted);
  console.log(report);
  const out = opt.out ?? resolve(import.meta.dir, `results-${startedAt.toISOString().slice(0, 10)}.md`);
  appendFileSync(out, `${existsSync(out) ? "\n" : ""}${report}`);
  say(`appended to ${out}; logs of every case in ${logDir}`);
}

// --- cases --------------------------------------------------------------------------------------

function labelOf(c: CaseId): string {
  return {
    limits: "limits",
    rss: "peak RSS",
    "scp-dd": "baseline: scp .xz to /dev/shm, then xzcat | dd on the board",
    "xzcat-ssh": "baseline: xzcat .xz | ssh board dd (raw on the wire)",
    ramfs: "flash-live ramfs (.xz), verify",
    "ramfs-noverify": "flash-live ramfs (.xz), --no-verify",
    stream: "flash-live stream (.xz), verify",
    "stream-asis": "flash-live stream (.xz), --transport as-is, verify",
    "stream-gzip": "flash-live stream (.xz), --transport gzip, verify",
    "stream-rawwire": "flash-live stream (.xz), --transport raw, verify",
    "stream-xz": "flash-live stream (.xz), --transport xz, verify",
    "stream-lzo": "flash-live stream (.xz), --transport lzo, verify",
    "ramfs-gz": "flash-live ramfs (.gz), verify",
    "ramfs-zst": "flash-live ramfs (.zst), verify",
    "stream-raw": "flash-live stream (raw .img), verify",
  }[c];
}

async function runCase(c: CaseId): Promise<void> {
  switch (c) {
    case "limits":
      return withBoard(pair.board, {}, measureLimits);
    case "rss":
      return measureRss();
    case "scp-dd":
      return withBoard(pair.board, {}, (b, h) => baselineScp(b, h));
    case "xzcat-ssh":
      return withBoard(pair.board, {}, (b, h) => baselineSshDd(b, h));
    case "ramfs":
      return withBoard(pair.board, {}, (b, h) => flashLive(c, b, h, target.xz, ["--ramfs"]));
    case "ramfs-noverify":
      return withBoard(pair.board, {}, (b, h) => flashLive(c, b, h, target.xz, ["--ramfs", "--no-verify"]));
    case "stream":
      return withBoard(pair.board, {}, (b, h) => flashLive(c, b, h, target.xz, ["--stream"]));
    case "stream-asis":
      return withBoard(pair.board, {}, (b, h) => flashLive(c, b, h, target.xz, ["--stream", "--transport", "as-is"]));
    case "stream-gzip":
      return withBoard(pair.board, {}, (b, h) => flashLive(c, b, h, target.xz, ["--stream", "--transport", "gzip"]));
    case "stream-rawwire":
      return withBoard(pair.board, {}, (b, h) => flashLive(c, b, h, target.xz, ["--stream", "--transport", "raw"]));
    case "stream-lzo":
      return withBoard(pair.board, {}, (b, h) => flashLive(c, b, h, target.xz, ["--stream", "--transport", "lzo"]));
    case "stream-xz":
      return withBoard(pair.board, {}, (b, h) => flashLive(c, b, h, target.xz, ["--stream", "--transport", "xz"]));
    case "ramfs-gz":
      return withBoard(pair.board, {}, (b, h) => flashLive(c, b, h, target.gz, ["--ramfs"]));
    case "ramfs-zst":
      return withBoard(pair.board, {}, (b, h) => flashLive(c, b, h, target.zst, ["--ramfs"]));
    case "stream-raw":
      return withBoard(pair.board, {}, (b, h) => flashLive(c, b, h, target.raw, ["--stream"]));
  }
}

/** A fresh board of the bench's kind and a user's HOME that trusts it; both gone afterwards. */
async function withBoard(kind: ImageName, opts: { diskSize?: number; snapshot?: boolean }, fn: (b: Board, h: BenchHome) => Promise<void>): Promise<void> {
  const board = await startBoard({ image: kind, ...opts });
  const home = new BenchHome();
  try {
    await home.trust(board);
    await fn(board, home);
  } finally {
    await board.stop();
    home.cleanup();
  }
}

/**
 * UserHome (flash-live reads its ~/.ssh) plus an OpenSSH config with absolute paths for the by-hand
 * steps: OpenSSH expands `~` from the passwd entry, not $HOME, so it could not use UserHome's.
 */
class BenchHome extends UserHome {
  readonly opensshConfig = this.path("openssh_config");

  async trust(board: Board): Promise<void> {
    await this.trustBoard(board);
    writeFileSync(
      this.opensshConfig,
      [
        "Host board board-root",
        "  HostName 127.0.0.1",
        `  Port ${board.sshPort}`,
        `  IdentityFile ${this.path(".ssh", "id_ed25519")}`,
        "  IdentitiesOnly yes",
        "  IdentityAgent none",
        `  UserKnownHostsFile ${this.path(".ssh", "known_hosts")}`,
        "  GlobalKnownHostsFile /dev/null",
        "  StrictHostKeyChecking yes",
        "  BatchMode yes",
        "  LogLevel ERROR",
        "Host board",
        `  User ${board.user}`,
        "Host board-root",
        "  User root",
        "",
      ].join("\n"),
    );
  }

  /** argv of OpenSSH to the board; the remote command is wrapped in the harness's marker guard. */
  ssh(alias: "board" | "board-root", command: string): string[] {
    return ["ssh", "-F", this.opensshConfig, alias, "--", guarded(command)];
  }

  scp(local: string, remote: string): string[] {
    return ["scp", "-q", "-F", this.opensshConfig, local, `board-root:${remote}`];
  }
}

interface Proc {
  code: number;
  stdout: string;
  stderr: string;
  seconds: number;
}

/** Run a host command (argv, or a bash script with "$@" arguments), capture output, time it. */
async function sh(argv: string[], opts: { stdinFile?: string; timeoutMs?: number; log?: string } = {}): Promise<Proc> {
  const t = performance.now();
  const proc = Bun.spawn(argv, {
    stdin: opts.stdinFile ? Bun.file(opts.stdinFile) : "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, LC_ALL: "C" },
  });
  const timer = setTimeout(() => proc.kill(), opts.timeoutMs ?? 1_200_000);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  const seconds = (performance.now() - t) / 1000;
  if (opts.log) appendFileSync(join(logDir, opts.log), `$ ${argv.join(" ")}\n(exit ${code}, ${seconds.toFixed(1)} s)\n${stdout}${stderr}\n`);
  return { code, stdout, stderr, seconds };
}

function must(p: Proc, what: string): Proc {
  if (p.code !== 0) throw new Error(`${what} exited with ${p.code}: ${p.stderr.trim().split("\n").slice(-5).join(" | ")}`);
  return p;
}

/** Board-side timing: seconds between two reads of /proc/uptime around `command`, printed as "@secs N". */
function timedOnBoard(command: string): string {
  return `read a _ < /proc/uptime; ${command}; rc=$?; read b _ < /proc/uptime; echo "@secs $a $b"; exit $rc`;
}

function boardSeconds(out: string): number {
  const m = out.match(/@secs ([\d.]+) ([\d.]+)/);
  if (!m) throw new Error(`no board timing in output: ${out.slice(-300)}`);
  return Number(m[2]) - Number(m[1]);
}

async function measureLimits(board: Board, home: BenchHome): Promise<void> {
  boardCpu = (await board.ssh("sed -n 's/^model name[^:]*: *//p' /proc/cpuinfo | head -n 1")).stdout.trim();
  const logins: number[] = [];
  for (let i = 0; i < 3; i++) logins.push(must(await sh(home.ssh("board", "true"), { log: "limits.log" }), "ssh true").seconds);
  limits.loginS = logins.sort((a, b) => a - b)[1];

  must(await sh(["sh", "-c", `head -c ${256 * MiB} /dev/urandom > ${shellQuote(randomFile)}`]), "random data");
  const link = must(await sh(home.ssh("board", timedOnBoard("cat > /dev/null")), { stdinFile: randomFile, log: "limits.log" }), "link");
  limits.linkMBs = (256 * MiB) / MB / boardSeconds(link.stdout);
  say(`link: ${limits.linkMBs.toFixed(1)} MB/s (OpenSSH into cat > /dev/null; whole command ${link.seconds.toFixed(1)} s)`);

  const scp = must(await sh(home.scp(target.xz, "/dev/shm/bench.xz"), { log: "limits.log" }), "scp");
  limits.scpMBs = target.sizes.xz / MB / Math.max(0.001, scp.seconds - limits.loginS!);
  say(`scp: ${limits.scpMBs.toFixed(1)} MB/s (${scp.seconds.toFixed(1)} s incl. a login)`);
  const dec = must(await sh(home.ssh("board-root", timedOnBoard("busybox xzcat /dev/shm/bench.xz > /dev/null")), { log: "limits.log" }), "xzcat");
  limits.decompMBs = target.sizes.raw / MB / boardSeconds(dec.stdout);
  say(`board busybox xzcat: ${limits.decompMBs.toFixed(1)} MB/s raw out`);
  await sh(home.ssh("board-root", "rm -f /dev/shm/bench.xz"));

  // Destroys the board (it is stopped right after): zeros over the whole image's extent, as root.
  const count = Math.ceil(target.sizes.raw / (4 * MiB));
  const disk = await boardDisk(board);
  const dd = must(await sh(home.ssh("board-root", `sync; LC_ALL=C dd if=/dev/zero of=${disk} bs=4M count=${count} conv=fsync 2>&1`), { log: "limits.log" }), "dd");
  const m = dd.stdout.match(/(\d+) bytes .* copied, ([\d.]+) s/);
  if (!m) throw new Error(`unexpected dd output: ${dd.stdout}`);
  limits.diskMBs = Number(m[1]) / MB / Number(m[2]);
  say(`disk: ${limits.diskMBs.toFixed(1)} MB/s (dd ${m[1]} bytes in ${m[2]} s)`);
}

async function boardDisk(board: Board): Promise<string> {
  const disk = { virtio: "/dev/vda", nvme: "/dev/nvme0n1", sd: "/dev/mmcblk0" }[board.bus];
  await board.ssh(`[ -b ${disk} ]`);
  return disk;
}

/**
 * FIELD-NOTES §2 by hand (as tests/e2e/harness.test.ts does it): busybox in /dev/shm and everything
 * after the freeze run by it; udev stopped and journald off /var where systemd runs; the boot
 * partition read-only; the root frozen; partitions set read-only; the write with bs=4M and fsync;
 * the disk flushed; reset with sysrq-b, no sync.
 */
function handFlash(input: string): string {
  return [
    "set -e",
    "BB=/dev/shm/bench/busybox",
    'DISK="$1"',
    'DEV="${DISK##*/}"',
    "if command -v systemctl >/dev/null 2>&1; then",
    "  systemctl stop systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket || true",
    "  journalctl --relinquish-var || true",
    "fi",
    "sync",
    "mount -o remount,ro /boot/firmware || true",
    "$BB fsfreeze --freeze /",
    'for p in /sys/class/block/"$DEV"/"$DEV"*; do $BB blockdev --setro "/dev/${p##*/}"; done',
    `${input}$BB dd of="$DISK" bs=4M conv=fsync`,
    '$BB blockdev --flushbufs "$DISK"',
    "echo b > /proc/sysrq-trigger",
  ].join("\n");
}

function handFlashCommand(disk: string, input: string): string {
  return `mkdir -p /dev/shm/bench && cp "$(command -v busybox)" /dev/shm/bench/busybox && exec /dev/shm/bench/busybox sh -c ${shellQuote(handFlash(input))} flash ${disk}`;
}

/**
 * The board's side of "back", without logging in (a login would load the booting board and race
 * the client being measured): when the harness starts the new boot (its firmware step, right after
 * the reset) and when sshd first sends its banner on the forwarded port. Both in seconds since t0.
 */
function watchBoot(board: Board, t0: number): { result: Promise<{ bootStart?: number; sshUp?: number }>; stop: () => void } {
  const n0 = board.boots.length;
  let stopped = false;
  const result = (async () => {
    while (!stopped && board.boots.length === n0) await Bun.sleep(200);
    if (stopped) return {};
    const bootStart = (board.boots.at(-1)!.at - (Date.now() - (performance.now() - t0))) / 1000;
    while (!stopped) {
      if (await sshBanner(board.sshPort, 3000)) return { bootStart, sshUp: (performance.now() - t0) / 1000 };
      await Bun.sleep(500);
    }
    return { bootStart };
  })();
  return { result, stop: () => (stopped = true) };
}

function bootPhases(toReboot: number, back: number, w: { bootStart?: number; sshUp?: number }): string {
  if (w.bootStart === undefined || w.sshUp === undefined) return `boot ${(back - toReboot).toFixed(0)}`;
  return `boot ${(back - toReboot).toFixed(0)} (sshd up ${(w.sshUp - w.bootStart).toFixed(0)} after the boot started, seen ${(back - w.sshUp).toFixed(0)} later)`;
}

/** After a by-hand flash: the SSH session dropped at the reset; wait for a new boot_id and the new image. */
async function backOnNewImage(board: Board, oldBootId: string): Promise<void> {
  await board.waitForReboot(oldBootId, 600_000);
  const id = (await board.ssh("cat /etc/image-id")).stdout.trim();
  if (id !== target.marker) throw new Error(`the board came back running ${id}, not ${target.marker}`);
}

async function baselineScp(board: Board, home: BenchHome): Promise<void> {
  const disk = await boardDisk(board);
  const old = await board.bootId();
  const t = performance.now();
  const watch = watchBoot(board, t);
  must(await sh(home.scp(target.xz, "/dev/shm/image.xz"), { log: "scp-dd.log" }), "scp");
  const copied = (performance.now() - t) / 1000;
  const r = await sh(home.ssh("board-root", handFlashCommand(disk, "$BB xzcat /dev/shm/image.xz | ")), { log: "scp-dd.log" });
  const toReboot = (performance.now() - t) / 1000;
  // sysrq-b drops the connection: ssh ends with 255, never with the script's own error.
  if (r.code !== 255 && r.code !== 0) throw new Error(`hand flash exited ${r.code}: ${r.stderr}`);
  await backOnNewImage(board, old);
  const back = (performance.now() - t) / 1000;
  watch.stop();
  const w = await watch.result;
  rows.push({ id: "scp-dd", label: labelOf("scp-dd"), kind: "baseline", wireBytes: target.sizes.xz, toReboot, back, ok: true, phases: `scp ${copied.toFixed(0)}, write ${(toReboot - copied).toFixed(0)}, ${bootPhases(toReboot, back, w)}` });
}

async function baselineSshDd(board: Board, home: BenchHome): Promise<void> {
  const disk = await boardDisk(board);
  const old = await board.bootId();
  const t = performance.now();
  const watch = watchBoot(board, t);
  const r = await sh(["bash", "-c", 'set -o pipefail; xzcat "$1" | "${@:2}"', "xzcat-ssh", target.xz, ...home.ssh("board-root", handFlashCommand(disk, ""))], { log: "xzcat-ssh.log" });
  const toReboot = (performance.now() - t) / 1000;
  if (r.code !== 255 && r.code !== 0) throw new Error(`hand flash exited ${r.code}: ${r.stderr}`);
  await backOnNewImage(board, old);
  const back = (performance.now() - t) / 1000;
  watch.stop();
  const w = await watch.result;
  rows.push({ id: "xzcat-ssh", label: labelOf("xzcat-ssh"), kind: "baseline", wireBytes: target.sizes.raw, toReboot, back, ok: true, phases: `send+write ${toReboot.toFixed(0)}, ${bootPhases(toReboot, back, w)}` });
}

interface CliRun extends Proc {
  lines: { t: number; text: string }[];
  rss: number;
  cpu: number;
  /** VmRSS sampled every 0.5 s: shows whether memory grows with the bytes read or levels off. */
  rssSamples: number[];
}

/** The CLI as a user runs it (UserHome's HOME), with each output line's time and the process's rusage. */
async function runCli(home: UserHome, args: string[], log: string, timeoutMs = 1_800_000): Promise<CliRun> {
  const t = performance.now();
  const proc = Bun.spawn([process.execPath, CLI, ...args], {
    cwd: home.dir,
    env: { PATH: process.env.PATH!, HOME: home.dir, FLASH_LIVE_HARNESS: "1", CI: "true", ...(process.env.CONSOLA_LEVEL ? { CONSOLA_LEVEL: process.env.CONSOLA_LEVEL } : {}) },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => proc.kill(), timeoutMs);
  const rssSamples: number[] = [];
  const sampler = setInterval(() => {
    try {
      const m = readFileSync(`/proc/${proc.pid}/status`, "utf8").match(/VmRSS:\s+(\d+) kB/);
      if (m) rssSamples.push(Number(m[1]) * 1024);
    } catch {
      // exited meanwhile
    }
  }, 500);
  const lines: { t: number; text: string }[] = [];
  const collect = async (s: ReadableStream<Uint8Array>) => {
    let all = "";
    let carry = "";
    const dec = new TextDecoder();
    for await (const c of s) {
      const text = dec.decode(c, { stream: true });
      all += text;
      carry += text;
      const now = (performance.now() - t) / 1000;
      let i: number;
      while ((i = carry.indexOf("\n")) >= 0) {
        lines.push({ t: now, text: carry.slice(0, i) });
        carry = carry.slice(i + 1);
      }
    }
    if (carry) lines.push({ t: (performance.now() - t) / 1000, text: carry });
    return all;
  };
  const [stdout, stderr, code] = await Promise.all([collect(proc.stdout), collect(proc.stderr), proc.exited]);
  clearTimeout(timer);
  clearInterval(sampler);
  const seconds = (performance.now() - t) / 1000;
  const ru = proc.resourceUsage();
  const cpu = ru ? Number(ru.cpuTime.total) / 1e6 : 0;
  writeFileSync(join(logDir, log), `$ flash-live ${args.join(" ")}\n(exit ${code}, ${seconds.toFixed(1)} s, maxRSS ${ru?.maxRSS}, cpu ${cpu.toFixed(1)} s, VmRSS max by quarter ${timeline(rssSamples)} MB)\n${lines.map((l) => `${l.t.toFixed(1).padStart(7)}  ${l.text}`).join("\n")}\n`);
  return { code, stdout, stderr, seconds, lines, rss: ru?.maxRSS ?? 0, cpu, rssSamples };
}

async function flashLive(id: CaseId, board: Board, home: BenchHome, file: string, args: string[]): Promise<void> {
  const old = await board.bootId();
  const watch = watchBoot(board, performance.now());
  const r = await runCli(home, ["flash", "board", file, "--yes", "--accept-new-host-key", ...args], `${id}.log`);
  watch.stop();
  const w = await watch.result;
  if (r.code !== 0) {
    writeFileSync(join(logDir, `${id}-serial.log`), board.serialLog());
    throw new Error(`flash-live exited ${r.code}: ${lastLines(r.stdout + r.stderr)} (board console: ${id}-serial.log)`);
  }
  const all = r.stdout + r.stderr;
  const done = all.match(/done in \S+: .* written to \S+, ([\d.]+ \w+) sent, verify (\w+)/);
  if (!done) throw new Error(`no "done in" line: ${lastLines(all)}`);
  const at = (re: RegExp) => r.lines.find((l) => re.test(l.text))?.t;
  const reboot = at(/rebooting into the new image/);
  // flash-live saw the new boot_id itself; the harness confirms which image runs.
  const bootNow = await board.bootId();
  if (bootNow === old) throw new Error("flash-live returned but the board did not reboot");
  const id2 = (await board.ssh("cat /etc/image-id")).stdout.trim();
  if (id2 !== target.marker) throw new Error(`the board runs ${id2}, not ${target.marker}`);
  const scanned = at(/image ok:/);
  // The plan box (after the transport measurement, when one ran) names the transport.
  const sentAs = /sent as\s+(\S+)( \((?:gzip -1 made|lzop -1 made|xz -1 made|decompressed) on this side(?: during the image check[^)]*)?\))?: (fastest by measurement|as fast as \S+ by measurement)?/.exec(all);
  const planned = sentAs?.[3] ? at(/sent as\s/) : undefined;
  const staged = at(/^sending\s.* in /);
  const quiesce = at(/board: quiesce/);
  const verify = at(/board: verify/);
  // Seconds between the landmarks of flash-live's own output (a missing landmark folds into the next).
  const parts: string[] = [];
  type Mark = [string, number | undefined];
  const middle: Mark[] = staged !== undefined
    ? [["send", staged], ["board check", quiesce], ["write", verify ?? reboot]]
    : [["stage", quiesce], ["send+write", verify ?? reboot]];
  const marks: Mark[] = [
    ["connect+scan", scanned],
    ["measure", planned],
    ...middle,
    ["verify", verify !== undefined ? reboot : undefined],
  ];
  let prev = 0;
  for (const [name, t] of marks) {
    if (t === undefined) continue;
    parts.push(`${name} ${(t - prev).toFixed(0)}`);
    prev = t;
  }
  if (reboot !== undefined) parts.push(bootPhases(reboot, r.seconds, w));
  rows.push({
    id,
    label: `${labelOf(id)}${sentAs ? `; sent as ${sentAs[1]}${sentAs[2] ?? ""}${sentAs[3] ? " (measured)" : ""}` : ""}`,
    kind: "flash-live",
    wireText: done[1],
    wireBytes: parseBytes(done[1]!),
    toReboot: reboot,
    back: r.seconds,
    rss: r.rss,
    cpu: r.cpu,
    ok: done[2] === "ok" || (done[2] === "skipped" && args.includes("--no-verify")),
    note: done[2] !== "ok" ? `verify ${done[2]}` : undefined,
    phases: parts.join(", "),
  });
}

/**
 * Peak RSS of the sending side while `check` reads a whole 8 GiB sparse image (a real MBR from the
 * target image at its start, zeros after), against the same check of the target image's raw file:
 * constant memory means the two are about equal. --stream: with the default ramfs plan, an 8 GiB
 * raw file would be refused (it does not fit the board's RAM) before it is read. The board needs a
 * disk of at least 8 GiB, or the image is refused as too large, also before it is read.
 */
async function measureRss(): Promise<void> {
  const big = join(work, "big.img");
  const size = 8 * 1024 * MiB;
  writeFileSync(big, "");
  const fd = openSync(big, "r+");
  try {
    const head = Buffer.alloc(MiB);
    const src = openSync(target.raw, "r");
    readSync(src, head, 0, MiB, 0);
    closeSync(src);
    writeSync(fd, head, 0, MiB, 0);
  } finally {
    closeSync(fd);
  }
  must(await sh(["truncate", "-s", String(size), big]), "truncate");
  say(`big.img: ${statSync(big).size} bytes apparent, ${(statSync(big).blocks * 512) / MiB} MiB allocated`);
  await withBoard("L", { diskSize: size + 64 * MiB, snapshot: false }, async (_board, home) => {
    for (const [label, file, rawBytes] of [
      [`${pair.image}.img (raw, ${(target.sizes.raw / MiB).toFixed(0)} MiB)`, target.raw, target.sizes.raw],
      ["8 GiB sparse raw image", big, size],
    ] as const) {
      const r = await runCli(home, ["check", "board", file, "--stream", "--json"], `rss-${rawBytes}.log`);
      let scanned = false;
      let note: string | undefined;
      try {
        const j = JSON.parse(r.stdout) as { ok: boolean; refusals: string[]; image?: { rawSize?: number; sha256?: string } };
        scanned = j.image?.rawSize === rawBytes && Boolean(j.image?.sha256);
        if (!j.ok) note = `refusals: ${j.refusals.join("; ")}`;
      } catch {
        note = `no JSON (exit ${r.code}): ${lastLines(r.stdout + r.stderr)}`;
      }
      rssChecks.push({ label, rawBytes, rss: r.rss, seconds: r.seconds, cpu: r.cpu, scanned, note, timeline: timeline(r.rssSamples) });
      say(`check ${label}: maxRSS ${(r.rss / MB).toFixed(0)} MB in ${r.seconds.toFixed(1)} s (scanned the whole image: ${scanned})`);
    }
  });
  rmSync(big, { force: true });
}

/** Highest VmRSS in each quarter of the run, MB: level = constant memory, rising = grows with the bytes read. */
function timeline(samples: number[]): string {
  if (samples.length < 4) return "–";
  const q = samples.length / 4;
  return [0, 1, 2, 3].map((i) => (Math.max(...samples.slice(Math.floor(i * q), Math.floor((i + 1) * q))) / MB).toFixed(0)).join(" / ");
}

// --- report -------------------------------------------------------------------------------------

function parseBytes(s: string): number {
  const m = s.match(/^([\d.]+) (B|KiB|MiB|GiB|TiB)$/);
  if (!m) return Number.NaN;
  return Number(m[1]) * 1024 ** ["B", "KiB", "MiB", "GiB", "TiB"].indexOf(m[2]!);
}

function lastLines(s: string, n = 6): string {
  return s.trim().split("\n").slice(-n).join(" | ");
}

function firstLine(s: string): string {
  return s.split("\n")[0]!.slice(0, 200);
}

const f1 = (n?: number) => (n === undefined || !Number.isFinite(n) ? "–" : n.toFixed(1));
const f0 = (n?: number) => (n === undefined || !Number.isFinite(n) ? "–" : n.toFixed(0));
const mib = (n?: number) => (n === undefined || !Number.isFinite(n) ? "–" : `${(n / MiB).toFixed(1)} MiB`);
const ratio = (a?: number, b?: number) => (a === undefined || b === undefined || !b ? "–" : `${(a / b).toFixed(2)}x`);

async function renderReport(interrupted?: string): Promise<string> {
  const raw = target.sizes.raw;
  const xz = target.sizes.xz;
  const baselines = rows.filter((r) => r.kind === "baseline" && r.ok && r.back !== undefined);
  const best = baselines.sort((a, b) => a.back! - b.back!)[0];
  const bestWrite = [...baselines].sort((a, b) => a.toReboot! - b.toReboot!)[0];
  const bottleneck = limits.linkMBs && limits.diskMBs ? Math.min(limits.linkMBs, limits.diskMBs) : undefined;
  const limitS = bottleneck ? raw / MB / bottleneck : undefined;
  const floorXzS = limits.linkMBs && limits.diskMBs && limits.decompMBs ? Math.max(xz / MB / limits.linkMBs, raw / MB / limits.diskMBs, raw / MB / limits.decompMBs) : undefined;
  const qemu = (await sh(["qemu-system-x86_64", "--version"])).stdout.split("\n")[0];
  const ssh = (await sh(["ssh", "-V"])).stderr.trim();
  const bun = Bun.version;
  const recipe = IMAGES[pair.board];
  const lines: string[] = [];
  lines.push(`## flash-live benchmark, ${startedAt.toISOString().replace(/\.\d+Z$/, "Z")}: ${pair.image}.img.xz onto ${pair.board} boards`);
  lines.push("");
  lines.push(`Machine: ${cpus().length} CPUs (nproc), ${cpus()[0]?.model.trim()}, no KVM; load average ${loadBefore.map((l) => l.toFixed(1)).join(" ")} at the start, ${loadavg().map((l) => l.toFixed(1)).join(" ")} at the end (other sessions run boards too). ${qemu}, TCG.`);
  lines.push(`Board: QEMU x86_64 TCG${boardCpu ? ` (guest CPU "${boardCpu}")` : ""}, -smp 1, ${1024} MiB RAM, virtio-blk disk (qcow2 overlay, cache=unsafe), ${recipe.flavor} image ${pair.board} (${recipe.diskMiB} MiB), restored from its snapshot for every case. Sending side: Bun ${bun}, ${ssh}.`);
  lines.push(`Image: ${pair.image}.img ${mib(raw)} raw, .xz ${mib(xz)}, .gz ${mib(target.sizes.gz)}, .zst ${mib(target.sizes.zst)}.`);
  lines.push(`Run time: ${(runSeconds / 60).toFixed(1)} min for cases ${done.join(", ")}${interrupted ? ` — **INCOMPLETE: ${interrupted}**; not run: ${cases.filter((c) => !done.includes(c)).join(", ")}` : ""}. Logs: ${logDir}.`);
  lines.push("");
  lines.push("### Limits (same board kind)");
  lines.push("");
  lines.push("| limit | measured |");
  lines.push("|---|---|");
  lines.push(`| link into the board: OpenSSH \`cat > /dev/null\` < 256 MiB random | ${f1(limits.linkMBs)} MB/s |`);
  lines.push(`| board disk write: \`dd if=/dev/zero of=DISK bs=4M conv=fsync\`, ${mib(Math.ceil(raw / (4 * MiB)) * 4 * MiB)} | ${f1(limits.diskMBs)} MB/s |`);
  lines.push(`| board \`busybox xzcat\` of the .xz in /dev/shm (raw bytes out, not a limit in the formula) | ${f1(limits.decompMBs)} MB/s |`);
  lines.push(`| scp of the .xz into /dev/shm (login subtracted) | ${f1(limits.scpMBs)} MB/s |`);
  lines.push(`| one OpenSSH login + \`true\` | ${f1(limits.loginS)} s |`);
  lines.push(`| **limit** = raw image bytes / min(link, disk) | **${f1(limitS)} s** |`);
  lines.push(`| floor for an .xz sent as is: max(.xz / link, raw / disk, raw / board xzcat) (not the issue's limit; shown for comparison) | ${f1(floorXzS)} s |`);
  lines.push(`| host load (1 min) during the limits | ${limits.load ?? "–"} |`);
  lines.push("");
  lines.push("### Flashes (wall seconds; each case on a fresh board)");
  lines.push("");
  lines.push("| case | on the wire | wire / .xz | to reboot | board back | ÷ best baseline (back) | ÷ limit (to reboot) | peak RSS | CPU | where the time went (s) | host load |");
  lines.push("|---|---|---|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    const wire = r.wireText ? `${r.wireText}` : r.wireBytes !== undefined ? mib(r.wireBytes) : "–";
    lines.push(
      `| ${r.label.replaceAll("|", "\\|")}${r.ok ? "" : " **FAILED**"}${r.note ? ` (${r.note})` : ""} | ${wire} | ${r.wireBytes !== undefined ? `${(r.wireBytes / xz).toFixed(2)}` : "–"} | ${f1(r.toReboot)} | ${f1(r.back)} | ${ratio(r.back, best?.back)} | ${ratio(r.toReboot, limitS)} | ${r.rss ? `${(r.rss / MB).toFixed(0)} MB` : "–"} | ${r.cpu ? `${r.cpu.toFixed(1)} s` : "–"} | ${r.phases ?? ""} | ${r.load ?? ""} |`,
    );
  }
  lines.push("");
  if (best) lines.push(`Best baseline (board back): ${best.label}, ${f1(best.back)} s; best baseline write (to reboot): ${bestWrite?.label}, ${f1(bestWrite?.toReboot)} s.`);
  lines.push("");
  lines.push("### Sending side's peak RSS (`flash-live check board IMAGE --stream --json`, whole image read and hashed)");
  lines.push("");
  lines.push("| image | raw size | whole image scanned | peak RSS | RSS by quarter of the run (MB) | wall | CPU |");
  lines.push("|---|---|---|---|---|---|---|");
  for (const c of rssChecks) {
    lines.push(`| ${c.label}${c.note ? ` (${c.note})` : ""} | ${mib(c.rawBytes)} | ${c.scanned ? "yes" : "**no**"} | ${(c.rss / MB).toFixed(0)} MB | ${c.timeline} | ${f1(c.seconds)} s | ${f1(c.cpu)} s |`);
  }
  lines.push("");
  lines.push(
    "Targets (issue 5): flash-live ≤ 0.7x the best baseline, within 1.3x of the limit, bytes on the wire ≤ the compressed size, peak RSS ≤ 200 MB. " +
      "\"to reboot\": start to the reset (baselines: the SSH session drops at sysrq-b; flash-live: its \"rebooting into the new image\" line, ~1 s before sysrq-b). " +
      "\"board back\": start to a login that reads a new boot_id (flash-live and the harness poll every second). Board boot time is in \"board back\" for every case alike. MB = 10^6 bytes.",
  );
  return `${lines.join("\n")}\n`;
}

await main();
