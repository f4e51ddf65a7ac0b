/**
 * The SSH link into a board, by client and cipher (issue 5, "the ssh2 path at OpenSSH speed"):
 * the same bytes (random, so nothing compresses) into `cat > /dev/null` on one fresh L board,
 * through OpenSSH's client and through flash-live's ssh2 session (Target.spawn stdin, 1 MiB writes),
 * per cipher both offer. Each figure: median of 3 runs, timed on this side from the first byte to
 * the remote command's exit. Run: bun bench/link.ts [MiB]
 */
import { randomBytes } from "node:crypto";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { startBoard } from "../tests/harness/board.ts";
import { connectSsh } from "../src/target/ssh.ts";

const MIB = Number(process.argv[2] ?? 64);
const data = randomBytes(MIB << 20);
const file = join(tmpdir(), `flash-live-link-${process.pid}.bin`);
writeFileSync(file, data);
const board = await startBoard({ image: "L" });
const results: string[] = [];
const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
try {
  const kh = join(tmpdir(), `flash-live-link-kh-${process.pid}`);
  writeFileSync(kh, `${await board.knownHostsLine()}\n`);
  for (const cipher of process.env.SKIP_OPENSSH ? [] : ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "chacha20-poly1305@openssh.com"]) {
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      const ssh = ["ssh", "-F", "/dev/null", "-i", board.keyPath, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", `UserKnownHostsFile=${kh}`, "-o", "StrictHostKeyChecking=yes", "-c", cipher, "-p", String(board.sshPort), `${board.user}@127.0.0.1`, "cat > /dev/null"];
      const p = Bun.spawn(["sh", "-c", 'f=$1; shift; exec "$@" < "$f"', "sh", file, ...ssh], { stdin: "ignore", stdout: "ignore", stderr: "inherit" });
      if ((await p.exited) !== 0) throw new Error(`ssh -c ${cipher} failed`);
      console.error(`openssh ${cipher} run ${i}: ${((performance.now() - t0) / 1000).toFixed(2)} s`);
      times.push((performance.now() - t0) / 1000);
    }
    results.push(`OpenSSH ${cipher}: ${(MIB / median(times)).toFixed(1)} MiB/s (incl. login; ${times.map((t) => t.toFixed(2)).join(" ")} s)`);
  }
  for (const cipher of ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr"]) {
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      const t = await connectSsh({ destination: "127.0.0.1", port: board.sshPort, user: board.user, identityFile: board.keyPath, sshConfigFile: "/dev/null", systemSshConfigFile: null, knownHostsFile: kh, interactive: false, ciphers: [cipher] });
      const p = await t.spawn(["sh", "-c", "cat > /dev/null"], {});
      p.stdout.resume();
      p.stderr.resume();
      for (let off = 0; off < data.length; off += 1 << 20) {
        if (!p.stdin.write(data.subarray(off, off + (1 << 20)))) await new Promise((r) => p.stdin.once("drain", r));
      }
      p.stdin.end();
      await p.exited;
      times.push((performance.now() - t0) / 1000);
      console.error(`ssh2 ${cipher} run ${i}: ${times.at(-1)!.toFixed(2)} s`);
      await t.close();
    }
    results.push(`ssh2    ${cipher}: ${(MIB / median(times)).toFixed(1)} MiB/s (incl. login; ${times.map((t) => t.toFixed(2)).join(" ")} s)`);
  }
} finally {
  await board.stop();
  rmSync(file, { force: true });
}
console.log(`\n${MIB} MiB of random bytes into cat > /dev/null on an L board (TCG, 1 vCPU):\n${results.join("\n")}`);
