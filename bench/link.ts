/**
 * The SSH link, by client and cipher (issue 5, "the ssh2 path at OpenSSH speed"): the same bytes
 * (random, so nothing compresses) into `cat > /dev/null`, through OpenSSH's client and through
 * flash-live's ssh2 session (Target.spawn stdin, a file piped in 1 MiB reads as flash-live streams an
 * image), per cipher. Each figure: median of 3 runs, timed on this side from the connection start to
 * the remote command's exit (login included for both clients).
 *
 *   bun bench/link.ts [MiB]              into a fresh L board (TCG, 1 vCPU): the board's side decides
 *   bun bench/link.ts --loopback [MiB]   into a private sshd on 127.0.0.1 (root): this side decides,
 *                                        as with a fast board on a fast link
 */
import { randomBytes } from "node:crypto";
import { createReadStream, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { startBoard } from "../tests/harness/board.ts";
import { keygen, startSshd } from "../tests/fixtures/sshd/sshd.ts";
import { connectSsh } from "../src/target/ssh.ts";

const loopback = process.argv.includes("--loopback");
const MIB = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? (loopback ? 1024 : 64));
const dir = mkdtempSync(join(tmpdir(), "flash-live-link-"));
const file = join(dir, "data.bin");
for (let off = 0; off < MIB; off += 64) writeFileSync(file, randomBytes(Math.min(64, MIB - off) << 20), { flag: "a" });

interface Endpoint {
  port: number;
  user: string;
  key: string;
  knownHosts: string;
  label: string;
  stop(): Promise<void>;
}

async function endpoint(): Promise<Endpoint> {
  const kh = join(dir, "known_hosts");
  if (loopback) {
    const sshd = await startSshd();
    const id = keygen(dir, "id");
    sshd.authorize(id.pub);
    writeFileSync(kh, `[127.0.0.1]:${sshd.port} ${sshd.hostKeys["ssh-ed25519"]}\n`);
    return { port: sshd.port, user: "root", key: id.path, knownHosts: kh, label: "a private sshd on 127.0.0.1 (this machine's 2 cores shared by both ends)", stop: () => sshd.stop() };
  }
  const board = await startBoard({ image: "L" });
  writeFileSync(kh, `${await board.knownHostsLine()}\n`);
  return { port: board.sshPort, user: board.user, key: board.keyPath, knownHosts: kh, label: "an L board (TCG, 1 vCPU)", stop: () => board.stop() };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const CIPHERS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "chacha20-poly1305@openssh.com"];

async function openssh(ep: Endpoint, cipher: string): Promise<void> {
  const ssh = ["ssh", "-F", "/dev/null", "-i", ep.key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", `UserKnownHostsFile=${ep.knownHosts}`, "-o", "StrictHostKeyChecking=yes", "-c", cipher, "-p", String(ep.port), `${ep.user}@127.0.0.1`, "cat > /dev/null"];
  const p = Bun.spawn(["sh", "-c", 'f=$1; shift; exec "$@" < "$f"', "sh", file, ...ssh], { stdin: "ignore", stdout: "ignore", stderr: "inherit" });
  if ((await p.exited) !== 0) throw new Error(`ssh -c ${cipher} failed`);
}

async function ssh2(ep: Endpoint, cipher: string): Promise<void> {
  const t = await connectSsh({ destination: "127.0.0.1", port: ep.port, user: ep.user, identityFile: ep.key, sshConfigFile: "/dev/null", systemSshConfigFile: null, knownHostsFile: ep.knownHosts, interactive: false, ciphers: [cipher] });
  try {
    const p = await t.spawn(["sh", "-c", "cat > /dev/null"], {});
    p.stdout.resume();
    p.stderr.resume();
    createReadStream(file, { highWaterMark: 1 << 20 }).pipe(p.stdin);
    if ((await p.exited) !== 0) throw new Error(`ssh2 ${cipher}: cat failed`);
  } finally {
    await t.close();
  }
}

const ep = await endpoint();
const rows: string[] = [];
try {
  for (const cipher of CIPHERS) {
    const rate: Record<string, number> = {};
    for (const [name, run] of [["OpenSSH", openssh], ["ssh2", ssh2]] as const) {
      const times: number[] = [];
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        await run(ep, cipher);
        times.push((performance.now() - t0) / 1000);
        console.error(`${name} ${cipher} run ${i}: ${times.at(-1)!.toFixed(2)} s`);
      }
      rate[name] = MIB / median(times);
      rows.push(`| ${cipher} | ${name} | ${rate[name]!.toFixed(1)} | ${times.map((x) => x.toFixed(2)).join(" ")} |`);
    }
    rows.push(`| ${cipher} | ssh2 / OpenSSH | ${(rate.ssh2! / rate.OpenSSH!).toFixed(2)}x | |`);
  }
} finally {
  await ep.stop();
  rmSync(dir, { recursive: true, force: true });
}
console.log(`\n${MIB} MiB of random bytes into cat > /dev/null on ${ep.label}:\n\n| cipher | client | MiB/s (median of 3) | runs, s |\n|---|---|---|---|\n${rows.join("\n")}`);
