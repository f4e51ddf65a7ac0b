/**
 * The demo: a disposable board A (Debian trixie + systemd in QEMU), flashed over SSH with image
 * B-cloud and a demo config, exactly as a user would flash a Raspberry Pi, then shown coming back.
 */
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { startBoard } from "../tests/harness/board.ts";
import { ensureImage } from "../tests/harness/build-image.ts";
import { UserHome } from "../tests/e2e/_flash-live.ts";

// The same guard as the tests: flash-live refuses any target that is not a harness board.
process.env.FLASH_LIVE_HARNESS = "1";
const say = (s: string) => console.log(`\n\x1b[1m== ${s}\x1b[0m`);

say("building or reusing the board images (first run: ~10-20 min, then cached)");
const [, image] = await Promise.all([ensureImage("A"), ensureImage("B-cloud", "xz")]);
say("booting board A in QEMU");
const board = await startBoard({ image: "A" });
const home = new UserHome();
try {
  await home.trustBoard(board);
  const before = (await board.ssh("hostname; cat /etc/image-id; cat /proc/sys/kernel/random/boot_id")).stdout.trim().split("\n");
  console.log(`board A is up on 127.0.0.1:${board.sshPort}: hostname ${before[0]}, image ${before[1]}`);

  const key = join(home.dir, ".ssh", "demo_ed25519");
  spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "demo", "-f", key]);
  const conf = join(home.dir, "demo.conf");
  writeFileSync(conf, ["hostname=demo-boat", "user=sailor", `ssh-key=${key}.pub`, "timezone=Europe/Helsinki", ""].join("\n"), { mode: 0o600 });
  say(`flash-live flash --config demo.conf board ${image.name}.img.xz --yes --accept-new-host-key`);
  const r = await home.run(["flash", "--config", conf, "board", image.xz, "--yes", "--accept-new-host-key"], {
    onOutput: (s) => process.stdout.write(s),
  });
  if (r.code !== 0) throw new Error(`flash-live exited with ${r.code}`);

  say("logging in as the configured user with the configured key");
  const login = spawnSync(
    "ssh",
    ["-i", key, "-p", String(board.sshPort), "-o", `UserKnownHostsFile=${home.path(".ssh", "known_hosts")}`, "-o", "LogLevel=ERROR", "sailor@127.0.0.1",
      "cloud-init status --wait >/dev/null 2>&1; echo \"hostname: $(hostname)\"; echo \"image:    $(cat /etc/image-id)\"; echo \"user:     $(id -un) ($(id -Gn))\"; echo \"time:     $(date)\""],
    { encoding: "utf8" },
  );
  console.log(login.stdout || login.stderr);
  say(`done in ${r.seconds.toFixed(0)} s: board A now runs ${image.name}, configured`);
} finally {
  await board.stop();
  home.cleanup();
}
