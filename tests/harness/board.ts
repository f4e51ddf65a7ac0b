import { appendFileSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { HarnessCommandError, log, run, type RunResult, since, sleep } from "./_run.ts";
import { ensureArm64Image } from "./build-arm64.ts";
import { type BoardImage, ensureImage } from "./build-image.ts";
import { hashOf } from "./build-tree.ts";
import { ensureCached, isAlive } from "./cache.ts";
import { diskSize, extractRange, readRange } from "./disk.ts";
import { type BootFiles, loadBootFiles } from "./firmware.ts";
import { cachePath, ensureSuiteKey } from "./paths.ts";
import { QmpClient } from "./qmp.ts";
import { IMAGES, type ImageName } from "./recipes.ts";
import { scpArgv, type SshEndpoint, sshArgv, sshBanner } from "./ssh.ts";

/**
 * Disposable QEMU boards (x86_64 under TCG) that boot like a Raspberry Pi.
 *
 * WHY DESTRUCTIVE COMMANDS CAN ONLY HIT A BOARD, by construction:
 * 1. The only remote channel is Board.ssh()/scp() (ssh.ts): OpenSSH to 127.0.0.1 on a port that
 *    this runner made QEMU forward to the guest (`hostfwd=tcp:127.0.0.1:PORT-:22`). QEMU refuses to
 *    start when it cannot bind that port, and the runner only talks to it while its QEMU runs.
 * 2. It logs in with the suite's key (paths.ts), generated into the board cache and authorized only
 *    inside board images: no other machine accepts it.
 * 3. Every remote command first checks for /etc/flash-live-test-board, which only board images
 *    contain (ssh.ts `guarded`); elsewhere it exits 97 before running anything.
 * 4. The guest's network is QEMU user-mode with restrict=on: the board cannot open connections to
 *    this machine or anywhere else; only the forwarded SSH port reaches it.
 * 5. On the host side the runner only reads and writes files it created under the board cache
 *    (qcow2 overlays, extracted boot files); the API takes no device paths.
 * (And the lead's tests/preload.ts makes flash-live itself refuse targets without the marker.)
 *
 * Boot flow ("firmware", firmware.ts): before every cold boot the runner reads kernel, initramfs
 * and cmdline.txt from partition 1 of the board's CURRENT disk and starts QEMU with them and
 * -no-reboot. A guest reboot makes QEMU exit (QMP SHUTDOWN reason "guest-reset"); the runner then
 * boots again from the disk as it is now, or holds (holdAtReboot) so a test can inspect the bytes.
 *
 * Snapshots: each (image, bus, disk size, memory) is booted once to SSH and its RAM + device state
 * saved (QEMU migration to a zstd file) next to a qcow2 of its disk; a board starts as a qcow2
 * overlay on that disk plus `-incoming` of the state. NVMe and SD boards cold-boot: QEMU 7.2's
 * nvme device is not migratable, and a restored sdhci-pci comes back with zeroed registers (the
 * guest then gets I/O errors on mmcblk0).
 */

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

export type DiskBus = "virtio" | "nvme" | "sd";

export interface ExtraDisk {
  /** An existing disk image file (not modified unless readOnly is false, the default being true). */
  path?: string;
  /** Or: build an ext4 disk from this folder (mkfs.ext4 -d) into the board's run dir. */
  fromDir?: string;
  /** Size for fromDir disks (default: content + 50% + 16 MiB). */
  sizeMiB?: number;
  /** Filesystem label for fromDir disks (default "data"). */
  label?: string;
  format?: "raw" | "qcow2";
  readOnly?: boolean;
}

export interface BoardOptions {
  image: ImageName;
  /** "arm64": the image's arm64 build (light images only) on qemu-system-aarch64 -M virt, cold boots only. */
  arch?: "x86_64" | "arm64";
  disk?: DiskBus;
  /** Bytes; default 2 GiB for systemd images, 512 MiB for light ones. Must be >= the image size. */
  diskSize?: number;
  memMiB?: number;
  /** On a guest reboot, stop and wait for resume() instead of booting again. */
  holdAtReboot?: boolean;
  /** Attached after the board is up (hotplugged after a snapshot restore), present at later boots. */
  extraDisks?: ExtraDisk[];
  /** "auto" (default): restore from the snapshot for virtio disks; nvme and sd boards cold-boot. */
  snapshot?: boolean | "auto";
  /** Default SSH user for ssh()/scp(): "pi". */
  user?: string;
  /** How long to wait for SSH after the start (default 240 s). */
  sshTimeoutMs?: number;
}

export type BoardState = "starting" | "running" | "held" | "off" | "failed" | "stopped";

export interface SshOptions {
  user?: string;
  /** Bytes or a host file streamed to the command's stdin. */
  stdin?: string | Uint8Array | { file: string };
  /** Throw HarnessCommandError on a non-zero exit (default true). */
  check?: boolean;
  timeoutMs?: number;
  connectTimeoutS?: number;
}

export interface DiskComparison {
  equal: boolean;
  /** Bytes compared: the size of the expected image. */
  size: number;
  diskSize: number;
  /** Up to 16 byte offsets where disk and expectation first differ. */
  firstDifferences: number[];
  /** Count of 512-byte sectors that differ. */
  differingSectors: number;
  /** Byte offsets of the first 4096 differing sectors. */
  differingSectorOffsets: number[];
}

export interface BoardTimings {
  /** Snapshot restore: QEMU start to guest running (s); undefined for cold starts. */
  restoreSeconds?: number;
  /** Start of the last boot (or restore) to the first SSH answer (s). */
  bootToSshSeconds?: number;
  /** Building the snapshot (a cold boot to SSH + save), when this start had to. */
  snapshotBuildSeconds?: number;
}

export async function startBoard(opts: BoardOptions): Promise<Board> {
  reapOrphans();
  const arch = opts.arch ?? "x86_64";
  const image = arch === "arm64" ? await ensureArm64Image(opts.image) : await ensureImage(opts.image);
  const recipe = IMAGES[opts.image];
  const bus = opts.disk ?? "virtio";
  const size = opts.diskSize ?? (recipe.flavor === "systemd" ? 2 * GiB : 512 * MiB);
  if (size < image.sizes.raw) throw new Error(`diskSize ${size} is smaller than image ${opts.image} (${image.sizes.raw} bytes) it must run`);
  if (bus === "sd" && (size & (size - 1)) !== 0) throw new Error(`QEMU SD cards must be a power of two in size, not ${size}`);
  const useSnapshot = opts.snapshot === undefined || opts.snapshot === "auto" ? bus === "virtio" && arch === "x86_64" : opts.snapshot;
  if (arch === "arm64" && (useSnapshot || bus !== "virtio")) throw new Error("arm64 boards cold-boot from a virtio disk only");
  if (useSnapshot && bus !== "virtio") throw new Error(`${bus} boards cannot start from a snapshot (QEMU 7.2: nvme is not migratable; a restored sdhci-pci loses its registers)`);
  const machine: MachineConfig = { arch, bus, diskSize: size, memMiB: opts.memMiB ?? 1024 };
  const { keyPath } = await ensureSuiteKey();

  const board = new Board(image, machine, opts, keyPath);
  try {
    await board._start(useSnapshot);
  } catch (e) {
    await board.stop();
    throw e;
  }
  return board;
}

export class Board {
  readonly runDir: string;
  readonly sshPort: number = 0;
  readonly user: string;
  readonly keyPath: string;
  readonly bus: DiskBus;
  holdAtReboot: boolean;
  state: BoardState = "starting";
  failure?: Error;
  readonly timings: BoardTimings = {};
  /** Every (re)boot of this board: "restore" from the snapshot, or "cold" via the firmware step. */
  readonly boots: { kind: "restore" | "cold"; at: number }[] = [];

  private vm?: QemuVm;
  private stopping = false;
  private waiters = new Set<() => void>();
  private readonly knownHosts: string;
  private readonly disk: string;
  private readonly extras: { path: string; format: "raw" | "qcow2"; readOnly: boolean }[] = [];
  private bootStartedAt = 0;

  /** @internal use startBoard() */
  constructor(
    readonly image: BoardImage,
    private readonly machine: MachineConfig,
    private readonly opts: BoardOptions,
    keyPath: string,
  ) {
    this.runDir = cachePath("runs", `${image.name}-${machine.bus}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`);
    mkdirSync(this.runDir, { recursive: true });
    this.keyPath = keyPath;
    this.user = opts.user ?? "pi";
    this.bus = machine.bus;
    this.holdAtReboot = opts.holdAtReboot ?? false;
    this.knownHosts = join(this.runDir, "known_hosts");
    this.disk = join(this.runDir, "disk.qcow2");
    liveBoards.add(this);
  }

  private get endpoint(): SshEndpoint {
    return { port: this.sshPort, keyPath: this.keyPath, knownHostsFile: this.knownHosts, controlDir: this.runDir };
  }

  /** @internal */
  async _start(useSnapshot: boolean): Promise<void> {
    (this as { sshPort: number }).sshPort = await freePort();
    for (const [i, d] of (this.opts.extraDisks ?? []).entries()) this.extras.push(await prepareExtraDisk(d, this.runDir, i));
    const t0 = performance.now();
    if (useSnapshot) {
      const snap = await ensureSnapshot(this.image, this.machine);
      if (snap.builtSeconds) this.timings.snapshotBuildSeconds = snap.builtSeconds;
      await run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", snap.disk, "-F", "qcow2", this.disk]);
      await this.restore(snap);
    } else {
      await run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", this.image.raw, "-F", "raw", this.disk, String(this.machine.diskSize)]);
      await this.bootCold();
    }
    await this.waitForSsh(this.opts.sshTimeoutMs ?? 240_000);
    if (useSnapshot) {
      // The guest's clock stood still since the snapshot was taken.
      await this.ssh(`date -u -s @${Math.floor(Date.now() / 1000)} >/dev/null`, { user: "root" });
    }
    log(`board ${this.image.name}/${this.bus} up on 127.0.0.1:${this.sshPort} in ${since(t0)} s (${useSnapshot ? `restore ${this.timings.restoreSeconds} s` : "cold boot"})`);
  }

  // --- remote access ---

  /** Run a shell command on the board (as `user`, default this.user) over OpenSSH, BatchMode. */
  async ssh(command: string, opts: SshOptions = {}): Promise<RunResult> {
    this.assertUsable();
    const argv = sshArgv(this.endpoint, opts.user ?? this.user, command, opts.connectTimeoutS);
    const proc = Bun.spawn(argv, {
      stdin: opts.stdin === undefined ? "ignore" : typeof opts.stdin === "object" && "file" in opts.stdin ? Bun.file(opts.stdin.file) : new Blob([opts.stdin]),
      stdout: "pipe",
      stderr: "pipe",
    });
    const timer = opts.timeoutMs ? setTimeout(() => proc.kill(), opts.timeoutMs) : undefined;
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    clearTimeout(timer);
    if (code !== 0 && opts.check !== false) {
      const failure = this.failure ? `\n(board failed: ${this.failure.message})` : "";
      throw new HarnessCommandError([`ssh ${opts.user ?? this.user}@board-${this.image.name}`, command], code, stderr + failure);
    }
    return { code, stdout, stderr };
  }

  async scp(local: string, remote: string, opts: { user?: string } = {}): Promise<void> {
    this.assertUsable();
    await run(scpArgv(this.endpoint, opts.user ?? this.user, local, remote));
  }

  /** The board's host keys as known_hosts lines for [127.0.0.1]:port (from ssh-keyscan). */
  async knownHostsLine(): Promise<string> {
    // ssh-keyscan opens one connection per key type; on a busy TCG board one of them can time out
    // and its key is silently missing. Every board's sshd has all three: ask again until they are there.
    let lines: string[] = [];
    for (let attempt = 1; attempt <= 5; attempt++) {
      const r = await run(["ssh-keyscan", "-p", String(this.sshPort), "-T", "20", "-t", "ecdsa,ed25519,rsa", "127.0.0.1"], { check: false });
      lines = r.stdout.split("\n").filter((l) => l && !l.startsWith("#")).sort();
      if (["ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"].every((t) => lines.some((l) => l.split(" ")[1] === t))) break;
      await Bun.sleep(1000);
    }
    if (lines.length === 0) throw new Error(`ssh-keyscan got no host key from board ${this.image.name}`);
    return lines.join("\n");
  }

  async bootId(): Promise<string> {
    return (await this.ssh("cat /proc/sys/kernel/random/boot_id")).stdout.trim();
  }

  /** Wait until SSH answers (a login succeeds). Fails fast when the board panicked or stopped. */
  async waitForSsh(timeoutMs = 240_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.assertUsable();
      if (this.state === "held") throw new Error(`board ${this.image.name} is held at a reboot: call resume() first`);
      if (this.state === "off") throw new Error(`board ${this.image.name} powered off`);
      // Nothing on the port yet (a cold boot in progress): look again soon (a refused probe is cheap).
      const answers = this.state === "running" && (await this.sshdAnswers());
      if (answers) {
        const r = await this.ssh("true", { check: false, connectTimeoutS: 5, timeoutMs: 30_000 }).catch(() => undefined);
        if (r?.code === 0) {
          if (this.bootStartedAt) this.timings.bootToSshSeconds = since(this.bootStartedAt);
          this.bootStartedAt = 0;
          return;
        }
      }
      if (Date.now() > deadline) throw new Error(`board ${this.image.name}: no SSH within ${timeoutMs / 1000} s\n${this.serialTail()}`);
      await this.waitChange(this.state === "running" && !answers ? 250 : 1000);
    }
  }

  /** Wait until the board answers with a boot_id other than `oldBootId` (a real reboot). */
  async waitForReboot(oldBootId: string, timeoutMs = 300_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.assertUsable();
      if (this.state === "held") throw new Error(`board ${this.image.name} is held at a reboot: call resume() first`);
      // Nothing on the port yet (a cold boot in progress): look again soon (a refused probe is cheap).
      const answers = this.state === "running" && (await this.sshdAnswers());
      if (answers) {
        const r = await this.ssh("cat /proc/sys/kernel/random/boot_id", { check: false, connectTimeoutS: 5, timeoutMs: 30_000 }).catch(() => undefined);
        const id = r?.code === 0 ? r.stdout.trim() : "";
        if (id && id !== oldBootId) {
          if (this.bootStartedAt) this.timings.bootToSshSeconds = since(this.bootStartedAt);
          this.bootStartedAt = 0;
          return id;
        }
      }
      if (Date.now() > deadline) throw new Error(`board ${this.image.name}: no new boot_id within ${timeoutMs / 1000} s\n${this.serialTail()}`);
      await this.waitChange(this.state === "running" && !answers ? 250 : 1000);
    }
  }

  /** Resolves once the guest rebooted and the runner holds it (holdAtReboot). */
  async waitHeld(timeoutMs = 600_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.state === "held") return;
      this.assertUsable();
      if (this.state === "off") throw new Error(`board ${this.image.name} powered off instead of rebooting`);
      if (Date.now() > deadline) throw new Error(`board ${this.image.name} did not reboot within ${timeoutMs / 1000} s\n${this.serialTail()}`);
      await this.waitChange(Math.min(1000, deadline - Date.now()));
    }
  }

  /** Boot a held board again, from its disk as it is now (the "firmware" reads the new cmdline.txt). */
  async resume(): Promise<void> {
    if (this.state !== "held" && this.state !== "off") throw new Error(`resume(): board is ${this.state}, not held`);
    await this.bootCold();
  }

  // --- disk ---

  /** The board's disk: a qcow2 (overlay on the image or snapshot). Read it with readDisk/compareDisk. */
  diskPath(): string {
    return this.disk;
  }

  /** Bytes of the board's disk. Consistent only while QEMU is not running (held, off or stopped). */
  async readDisk(offset: number, length: number): Promise<Uint8Array> {
    return readRange(this.disk, "qcow2", offset, length, join(this.runDir, "read.tmp"));
  }

  /** Save the first `length` bytes (default: the whole disk) as a raw file. */
  async exportDisk(out: string, length?: number): Promise<void> {
    await extractRange(this.disk, "qcow2", 0, length ?? (await diskSize(this.disk, "qcow2")), out);
  }

  /**
   * Byte-for-byte: the first size(image) bytes of the board's disk against the raw image, with
   * `patches` applied to the expected side (the intended customization). Needs QEMU not running
   * (held at a reboot, powered off, or failed), so every guest write is in the file.
   */
  async compareDisk(imageRawPath: string, opts: { patches?: { offset: number; data: Uint8Array }[] } = {}): Promise<DiskComparison> {
    if (this.state === "running" || this.state === "starting") throw new Error("compareDisk(): the board is running; hold it at reboot (holdAtReboot) first");
    if (this.state === "stopped") throw new Error("compareDisk(): the board is stopped and its disk deleted; compare while it is held");
    const size = statSync(imageRawPath).size;
    const dSize = await diskSize(this.disk, "qcow2");
    const result: DiskComparison = { equal: false, size, diskSize: dSize, firstDifferences: [], differingSectors: 0, differingSectorOffsets: [] };
    if (dSize < size) {
      result.differingSectors = Math.ceil((size - dSize) / 512);
      return result;
    }
    const patches = [...(opts.patches ?? [])].sort((a, b) => a.offset - b.offset);
    for (const p of patches) if (p.offset < 0 || p.offset + p.data.length > size) throw new Error(`patch at ${p.offset} (+${p.data.length}) is outside the image`);
    const actualPath = join(this.runDir, "compare.raw");
    await extractRange(this.disk, "qcow2", 0, size, actualPath);
    try {
      compareFiles(imageRawPath, actualPath, size, patches, result);
    } finally {
      rmSync(actualPath, { force: true });
    }
    result.equal = result.differingSectors === 0;
    return result;
  }

  // --- logs and lifetime ---

  serialLog(): string {
    const p = join(this.runDir, "serial.log");
    return existsSync(p) ? readFileSync(p, "utf8") : "";
  }

  /** Always safe to call (afterEach/afterAll): kills QEMU, deletes the run dir. */
  async stop(): Promise<void> {
    if (this.state === "stopped") return;
    this.stopping = true;
    await this.vm?.kill();
    this.vm = undefined;
    this.state = "stopped";
    this.notify();
    liveBoards.delete(this);
    if (!process.env.FLASH_LIVE_KEEP_BOARDS) rmSync(this.runDir, { recursive: true, force: true });
    else log(`kept ${this.runDir} (FLASH_LIVE_KEEP_BOARDS)`);
  }

  // --- internal ---

  /** During a cold boot (not after a restore, whose sshd is up already): does sshd answer yet (sshBanner)? */
  private sshdAnswers(): Promise<boolean> {
    if (this.boots.at(-1)?.kind !== "cold" || !this.bootStartedAt) return Promise.resolve(true);
    return sshBanner(this.sshPort, 1500);
  }

  private assertUsable(): void {
    if (this.state === "failed") throw this.failure ?? new Error("board failed");
    if (this.state === "stopped") throw new Error(`board ${this.image.name} is stopped`);
  }

  private async restore(snap: Snapshot): Promise<void> {
    writeFileSync(this.knownHosts, "");
    this.boots.push({ kind: "restore", at: Date.now() });
    const t0 = performance.now();
    this.bootStartedAt = t0;
    appendFileSync(join(this.runDir, "serial.log"), `\n=== flash-live harness: restore from snapshot ${snap.dir} ===\n`);
    const vm = await QemuVm.start(qemuArgs(this.machine, this.runArgs(snap.boot, `exec:zstd -dcq ${snap.state}`)), this.runDir);
    this.attach(vm);
    // The snapshot was saved from a stopped VM, so the restored one waits paused: load, then cont.
    for (const deadline = Date.now() + 120_000; ; ) {
      const st = await vm.qmp.execute<{ status?: string; "error-desc"?: string }>("query-migrate");
      if (st.status === "completed") break;
      if (st.status === "failed") throw new Error(`restoring snapshot ${snap.dir}: ${st["error-desc"] ?? "failed"}`);
      if (vm.dead || Date.now() > deadline) throw new Error(`restoring snapshot ${snap.dir}: ${vm.dead ? "QEMU exited" : "timed out"}\n${vm.logTail()}`);
      await sleep(50);
    }
    await vm.qmp.execute("cont");
    this.timings.restoreSeconds = since(t0);
    // Extra disks are not in the snapshot's device set: hotplug them now (PCI hotplug).
    for (const [i, d] of this.extras.entries()) {
      await vm.qmp.execute("blockdev-add", { driver: d.format, "node-name": `xd${i}`, "read-only": d.readOnly, file: { driver: "file", filename: d.path } });
      await vm.qmp.execute("device_add", { driver: "virtio-blk-pci", drive: `xd${i}`, id: `xdev${i}` });
    }
    this.state = "running";
    this.notify();
  }

  private async bootCold(): Promise<void> {
    writeFileSync(this.knownHosts, "");
    this.state = "starting";
    this.boots.push({ kind: "cold", at: Date.now() });
    this.bootStartedAt = performance.now();
    const boot = await loadBootFiles(this.disk, "qcow2", join(this.runDir, "boot"));
    appendFileSync(join(this.runDir, "serial.log"), `\n=== flash-live harness: boot ${this.boots.length} from the disk's partition 1, cmdline: ${boot.cmdline} ===\n`);
    const vm = await QemuVm.start(qemuArgs(this.machine, this.runArgs(boot)), this.runDir);
    this.attach(vm);
    this.state = "running";
    this.notify();
  }

  private runArgs(boot: BootFiles, incoming?: string): RunArgs {
    return { boot, disk: this.disk, serialLog: join(this.runDir, "serial.log"), qmpSocket: join(this.runDir, "qmp.sock"), sshPort: this.sshPort, extras: this.extras, incoming };
  }

  private attach(vm: QemuVm): void {
    this.vm = vm;
    void vm.exited.then(async ({ code, reason }) => {
      if (this.vm !== vm || this.stopping) return;
      this.vm = undefined;
      if (vm.panic) return this.fail(new Error(`board ${this.image.name}: kernel panic\n${vm.panic}`));
      if (reason === "guest-reset") {
        if (this.holdAtReboot) {
          this.state = "held";
          this.notify();
          return;
        }
        return this.bootCold().catch((e) => this.fail(e as Error));
      }
      if (reason === "guest-shutdown" || reason === "guest-panic") {
        this.state = reason === "guest-panic" ? "failed" : "off";
        if (reason === "guest-panic") this.failure = new Error(`board ${this.image.name}: guest panic\n${this.serialTail()}`);
        this.notify();
        return;
      }
      this.fail(new Error(`board ${this.image.name}: QEMU exited (code ${code}, ${reason ?? "no shutdown event"})\n${vm.logTail()}`));
    });
  }

  private fail(e: Error): void {
    if (this.state === "stopped") return;
    this.failure = e;
    this.state = "failed";
    this.notify();
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  private waitChange(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      this.waiters.add(done);
    });
  }

  private serialTail(lines = 30): string {
    return `--- serial (last ${lines} lines) ---\n${this.serialLog().trimEnd().split("\n").slice(-lines).join("\n")}`;
  }
}

/** An ext4 disk image file holding a copy of `fromDir` (for "USB stick" / data disk cases). */
export async function makeDataDisk(fromDir: string, out: string, opts: { sizeMiB?: number; label?: string } = {}): Promise<string> {
  let sizeMiB = opts.sizeMiB;
  if (!sizeMiB) {
    const bytes = Number((await run(["du", "-sb", fromDir])).stdout.split("\t")[0]);
    sizeMiB = Math.ceil((bytes * 1.5) / MiB) + 16;
  }
  rmSync(out, { force: true });
  await run(["truncate", "-s", `${sizeMiB}M`, out]);
  await run(["mkfs.ext4", "-q", "-F", "-L", opts.label ?? "data", "-d", fromDir, out]);
  return out;
}

// --- internal ---

interface MachineConfig {
  arch: "x86_64" | "arm64";
  bus: DiskBus;
  diskSize: number;
  memMiB: number;
}

interface RunArgs {
  boot: BootFiles;
  disk: string;
  serialLog: string;
  qmpSocket: string;
  sshPort: number;
  extras: { path: string; format: "raw" | "qcow2"; readOnly: boolean }[];
  incoming?: string;
}

interface Snapshot {
  dir: string;
  disk: string;
  state: string;
  boot: BootFiles;
  builtSeconds?: number;
}

/**
 * The QEMU command line. A snapshot restores only into the same machine: ensureSnapshot() hashes
 * this function's output (with placeholder paths) into the snapshot's key.
 */
function qemuArgs(m: MachineConfig, r: RunArgs): string[] {
  const disk = `file=${r.disk},format=qcow2,if=none,id=d0,cache=unsafe,discard=unmap`;
  const busArgs = {
    virtio: ["-device", "virtio-blk-pci,drive=d0"],
    nvme: ["-device", "nvme,drive=d0,serial=flashlive0"],
    sd: ["-device", "sdhci-pci", "-device", "sd-card,drive=d0"],
  }[m.bus];
  const x86 = m.arch === "x86_64";
  const args = [
    ...(x86
      ? [
        "qemu-system-x86_64",
        // RDRAND (emulated by TCG) lets the guest's CRNG be ready at once: sshd never waits for entropy.
        // Not `-cpu max`: its AVX2 emulation is new in QEMU 7.2, and every guest xz/zstd/ssh would run it.
        // Nehalem (SSE4.2): the floor of Bun's baseline x64 build, which local-mode tests run on the board.
        "-M", "pc", "-accel", "tcg", "-cpu", "Nehalem,+rdrand",
      ]
      // arm64: the kernel's console is the PL011 (ttyAMA0, in the image's cmdline.txt).
      : ["qemu-system-aarch64", "-M", "virt", "-accel", "tcg", "-cpu", "cortex-a72"]),
    "-smp", "1", "-m", String(m.memMiB),
    "-nodefaults", "-display", "none", "-no-reboot", ...(x86 ? ["-rtc", "base=utc"] : []),
    "-chardev", `file,id=ser0,path=${r.serialLog},append=on`, "-serial", "chardev:ser0",
    "-qmp", `unix:${r.qmpSocket},server=on,wait=off`,
    "-kernel", r.boot.kernel, ...(r.boot.initrd ? ["-initrd", r.boot.initrd] : []), "-append", r.boot.cmdline,
    "-drive", disk, ...busArgs,
    "-netdev", `user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:${r.sshPort}-:22`, "-device", "virtio-net-pci,netdev=n0",
    "-device", "virtio-rng-pci",
  ];
  // No USB controller: no test uses one, and a systemd board would load its drivers at every boot.
  // Extra disks are virtio-blk-pci devices after the board's disk on the PCI bus, so the board's disk
  // stays /dev/vda (the arm64 initramfs mounts root=/dev/vda2 by name). arm64: no snapshots.
  if (!x86 && r.incoming) throw new Error("arm64 boards have no snapshots");
  if (r.incoming) {
    args.push("-incoming", r.incoming);
  } else {
    for (const [i, d] of r.extras.entries()) {
      args.push("-blockdev", `driver=${d.format},node-name=xd${i},read-only=${d.readOnly ? "on" : "off"},file.driver=file,file.filename=${d.path}`);
      args.push("-device", `virtio-blk-pci,drive=xd${i},id=xdev${i}`);
    }
  }
  return args;
}

const snapshotsBuilding = new Map<string, Promise<Snapshot>>();

async function ensureSnapshot(image: BoardImage, m: MachineConfig): Promise<Snapshot> {
  const qemuVersion = (await run(["qemu-system-x86_64", "--version"])).stdout.split("\n")[0]!;
  const placeholder: RunArgs = { boot: { kernel: "K", initrd: "I", cmdline: "C" }, disk: "D", serialLog: "S", qmpSocket: "Q", sshPort: 0, extras: [], incoming: "X" };
  const key = hashOf(image.key, qemuVersion, JSON.stringify(qemuArgs(m, placeholder)), "snapshot-v1");
  const memo = `${image.name}-${m.bus}-${key}`;
  let p = snapshotsBuilding.get(memo);
  if (!p) {
    p = (async () => {
      const t0 = performance.now();
      const { dir, built } = await ensureCached("snapshots", `${image.name}-${m.bus}`, key, (tmp, final) => saveSnapshot(image, m, tmp, final));
      const initrd = join(dir, "boot/initrd");
      return {
        dir, disk: join(dir, "disk.qcow2"), state: join(dir, "state.zst"),
        boot: { kernel: join(dir, "boot/kernel"), initrd: existsSync(initrd) ? initrd : undefined, cmdline: readFileSync(join(dir, "boot/cmdline.txt"), "utf8").split("\n")[0]!.trim() },
        builtSeconds: built ? since(t0) : undefined,
      };
    })();
    snapshotsBuilding.set(memo, p);
    p.catch(() => snapshotsBuilding.delete(memo));
  }
  return p;
}

/** Boot the image once to SSH, let it settle, and save RAM + device state next to its disk. */
async function saveSnapshot(image: BoardImage, m: MachineConfig, tmp: string, final: string): Promise<void> {
  const t0 = performance.now();
  log(`building snapshot of ${image.name} on ${m.bus} (${final})`);
  let vm: QemuVm | undefined;
  try {
    // The disk the final snapshot dir will hold: overlays of running boards point at final/disk.qcow2.
    const disk = join(tmp, "disk.qcow2");
    await run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", image.raw, "-F", "raw", disk, String(m.diskSize)]);
    const boot = await loadBootFiles(disk, "qcow2", join(tmp, "boot"));
    const { keyPath } = await ensureSuiteKey();
    const ep: SshEndpoint = { port: await freePort(), keyPath, knownHostsFile: "/dev/null" };
    vm = await QemuVm.start(qemuArgs(m, { boot, disk, serialLog: join(tmp, "serial.log"), qmpSocket: join(tmp, "qmp.sock"), sshPort: ep.port, extras: [] }), tmp);
    const sshRun = (cmd: string, timeoutS = 10) => run(sshArgv(ep, "root", cmd, timeoutS), { check: false });
    for (let ok = false; !ok; ) {
      if (vm.dead) throw new Error(`snapshot boot of ${image.name} failed: ${vm.panic ?? vm.logTail()}`);
      if (performance.now() - t0 > 300_000) throw new Error(`snapshot boot of ${image.name}: no SSH in 300 s`);
      ok = (await sshRun("true", 5)).code === 0;
      if (!ok) await sleep(1000);
    }
    const bootSeconds = since(t0);
    if (IMAGES[image.name].flavor === "systemd") {
      // Snapshot a settled system, not one still starting units.
      await sshRun("systemctl is-system-running --wait >/dev/null; true", 120);
    }
    await sshRun("sync");
    await sleep(1000); // let the SSH session's logout settle before freezing the RAM
    await vm.qmp.execute("stop");
    await vm.qmp.execute("migrate", { uri: `exec:zstd -q -T0 -3 -o ${join(tmp, "state.zst")}` });
    for (;;) {
      const st = await vm.qmp.execute<{ status: string; "error-desc"?: string }>("query-migrate");
      if (st.status === "completed") break;
      if (st.status === "failed" || st.status === "cancelled") throw new Error(`saving snapshot of ${image.name}: ${st["error-desc"] ?? st.status}`);
      await sleep(200);
    }
    await vm.kill();
    vm = undefined;
    const stateBytes = statSync(join(tmp, "state.zst")).size;
    writeFileSync(join(tmp, "info.json"), `${JSON.stringify({ image: image.name, imageKey: image.key, ...m, bootSeconds, stateBytes, builtSeconds: since(t0) }, null, 2)}\n`);
    rmSync(join(tmp, "qmp.sock"), { force: true });
    rmSync(join(tmp, "owner.json"), { force: true });
    log(`snapshot of ${image.name} on ${m.bus}: boot to SSH ${bootSeconds} s, saved in ${since(t0)} s, state ${(stateBytes / MiB).toFixed(0)} MiB`);
  } catch (e) {
    await vm?.kill();
    throw e;
  }
}

/** One QEMU process: spawn, QMP, exit reason, and a watch on the serial log for kernel panics. */
class QemuVm {
  panic?: string;
  dead = false;
  private shutdownReason?: string;
  private watch?: ReturnType<typeof setInterval>;

  private constructor(
    readonly proc: Bun.Subprocess,
    readonly qmp: QmpClient,
    private readonly runDir: string,
    private readonly serialPath: string,
    readonly exited: Promise<{ code: number | null; reason?: string }>,
  ) {}

  static async start(args: string[], runDir: string): Promise<QemuVm> {
    const serialPath = args[args.indexOf("-chardev") + 1]!.match(/path=([^,]+)/)![1]!;
    const qmpPath = args[args.indexOf("-qmp") + 1]!.match(/^unix:([^,]+)/)![1]!;
    rmSync(qmpPath, { force: true });
    const logPath = join(runDir, "qemu.log");
    appendFileSync(logPath, `\n$ ${args.join(" ")}\n`);
    const logFd = openSync(logPath, "a");
    const proc = Bun.spawn(args, { stdin: "ignore", stdout: logFd, stderr: logFd });
    closeSync(logFd);
    writeFileSync(join(runDir, "owner.json"), JSON.stringify({ testPid: process.pid, qemuPid: proc.pid }));
    liveQemus.add(proc);
    let vm: QemuVm | undefined;
    const exited = proc.exited.then((code) => {
      liveQemus.delete(proc);
      if (vm) {
        vm.dead = true;
        clearInterval(vm.watch);
        vm.qmp.close();
      }
      return { code, reason: vm?.shutdownReason };
    });
    let qmp: QmpClient;
    try {
      qmp = await QmpClient.connect(qmpPath, 20_000, () => proc.exitCode === null);
    } catch (e) {
      proc.kill("SIGKILL");
      await proc.exited;
      throw new Error(`QEMU did not start: ${(e as Error).message}\n${readFileSync(logPath, "utf8").split("\n").slice(-10).join("\n")}`);
    }
    vm = new QemuVm(proc, qmp, runDir, serialPath, exited);
    qmp.onEvent((e) => {
      if (e.event === "SHUTDOWN") vm!.shutdownReason = String(e.data?.reason ?? "");
      if (e.event === "GUEST_PANICKED") vm!.shutdownReason = "guest-panic";
    });
    vm.watchSerial();
    return vm;
  }

  /** Fail fast: a kernel panic under TCG would otherwise look like a slow boot until a timeout. */
  private watchSerial(): void {
    let offset = existsSync(this.serialPath) ? statSync(this.serialPath).size : 0;
    let carry = "";
    this.watch = setInterval(() => {
      if (this.dead || !existsSync(this.serialPath)) return;
      const size = statSync(this.serialPath).size;
      if (size <= offset) return;
      const fd = openSync(this.serialPath, "r");
      const buf = Buffer.alloc(size - offset);
      readSync(fd, buf, 0, buf.length, offset);
      closeSync(fd);
      offset = size;
      const text = carry + buf.toString("latin1");
      carry = text.slice(-64);
      if (/Kernel panic/.test(text)) {
        // Give the panic message a moment to finish printing, then stop the machine.
        setTimeout(() => {
          this.panic = readFileSync(this.serialPath, "latin1").split("\n").slice(-40).join("\n");
          this.proc.kill("SIGKILL");
        }, 500);
        clearInterval(this.watch);
      }
    }, 300);
  }

  logTail(lines = 15): string {
    const p = join(this.runDir, "qemu.log");
    return existsSync(p) ? readFileSync(p, "utf8").trimEnd().split("\n").slice(-lines).join("\n") : "";
  }

  async kill(): Promise<void> {
    if (this.dead) return;
    try {
      await Promise.race([this.qmp.execute("quit"), sleep(2000)]);
    } catch {
      // QMP already gone: fall through to the signal.
    }
    const t = setTimeout(() => this.proc.kill("SIGKILL"), 3000);
    await this.exited;
    clearTimeout(t);
  }
}

async function prepareExtraDisk(d: ExtraDisk, runDir: string, i: number) {
  if (d.fromDir) {
    const path = await makeDataDisk(d.fromDir, join(runDir, `extra${i}.img`), { sizeMiB: d.sizeMiB, label: d.label });
    return { path, format: "raw" as const, readOnly: d.readOnly ?? false };
  }
  if (!d.path) throw new Error("extra disk needs path or fromDir");
  return { path: d.path, format: d.format ?? "raw", readOnly: d.readOnly ?? true };
}

function compareFiles(expectedPath: string, actualPath: string, size: number, patches: { offset: number; data: Uint8Array }[], out: DiskComparison): void {
  const CHUNK = 4 * MiB;
  const exp = Buffer.alloc(CHUNK);
  const act = Buffer.alloc(CHUNK);
  const fe = openSync(expectedPath, "r");
  const fa = openSync(actualPath, "r");
  try {
    for (let pos = 0; pos < size; pos += CHUNK) {
      const n = Math.min(CHUNK, size - pos);
      readFull(fe, exp, n, pos);
      readFull(fa, act, n, pos);
      for (const p of patches) {
        const from = Math.max(p.offset, pos);
        const to = Math.min(p.offset + p.data.length, pos + n);
        if (from < to) exp.set(p.data.subarray(from - p.offset, to - p.offset), from - pos);
      }
      if (exp.subarray(0, n).equals(act.subarray(0, n))) continue;
      for (let s = 0; s < n; s += 512) {
        const e = exp.subarray(s, Math.min(s + 512, n));
        const a = act.subarray(s, Math.min(s + 512, n));
        if (e.equals(a)) continue;
        out.differingSectors++;
        if (out.differingSectorOffsets.length < 4096) out.differingSectorOffsets.push(pos + s);
        for (let b = 0; b < e.length && out.firstDifferences.length < 16; b++) if (e[b] !== a[b]) out.firstDifferences.push(pos + s + b);
      }
    }
  } finally {
    closeSync(fe);
    closeSync(fa);
  }
}

function readFull(fd: number, buf: Buffer, n: number, pos: number): void {
  let got = 0;
  while (got < n) {
    const r = readSync(fd, buf, got, n - got, pos + got);
    if (r === 0) {
      buf.fill(0, got, n);
      return;
    }
    got += r;
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

const liveBoards = new Set<Board>();
const liveQemus = new Set<Bun.Subprocess>();

// A test process that exits (or is interrupted) must not leave QEMUs running: kill ours by pid.
process.on("exit", () => {
  for (const p of liveQemus) p.kill("SIGKILL");
});

/**
 * Boards of a test process that died without cleanup (SIGKILL, crash): kill their QEMU by its
 * recorded pid (only if that pid is still a qemu-system process) and delete the run dir.
 */
function reapOrphans(): void {
  const runs = cachePath("runs");
  if (!existsSync(runs)) return;
  for (const entry of readdirSync(runs)) {
    const dir = join(runs, entry);
    const ownerFile = join(dir, "owner.json");
    let owner: { testPid: number; qemuPid: number } | undefined;
    try {
      owner = JSON.parse(readFileSync(ownerFile, "utf8"));
    } catch {
      // No owner yet: a board being set up right now, or an empty leftover; judge by age.
      if (Date.now() - statSync(dir).mtimeMs > 3600_000) rmSync(dir, { recursive: true, force: true });
      continue;
    }
    if (!owner || owner.testPid === process.pid || isAlive(owner.testPid)) continue;
    if (isAlive(owner.qemuPid) && readProcCmdline(owner.qemuPid).startsWith("qemu-system")) {
      try {
        process.kill(owner.qemuPid, "SIGKILL");
      } catch {
        // Gone meanwhile.
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

function readProcCmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0]!.split("/").pop()!;
  } catch {
    return "";
  }
}
