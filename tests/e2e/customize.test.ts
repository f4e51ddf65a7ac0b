/**
 * issue 3, "Done when" (E2E): `flash --config FILE` on a running QEMU board, run as a user runs
 * flash-live (the CLI in a child process with its own HOME). Each case proves it three ways:
 * - the bytes: at the board's reboot the disk equals the image plus exactly the sectors the CLI
 *   sent (FLASH_LIVE_TEST_PATCH_OUT), every one inside the boot partition, which fsck.fat finds
 *   clean and which holds the expected seed files;
 * - the boot: the configured system comes up (cloud-init done / firstrun.sh ran and rebooted);
 * - the user's view: hostname and /etc/hosts, the new user logs in with each key and with the
 *   password, the password is what sudo takes, time zone, Wi-Fi config with the PSK and no
 *   plaintext secret anywhere.
 *
 * The CLI logs in as root here: `user=` takes over the image's UID 1000 account (`pi`), so a CLI
 * logged in as pi could not log back in after the flash (see the report in the commit history).
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { type Board, startBoard } from "../harness/board.ts";
import { type BoardImage, ensureImage } from "../harness/build-image.ts";
import type { ImageName } from "../harness/recipes.ts";
import { EXAMPLE_BOOT_FILE, EXAMPLE_BOOT_TEXT } from "../../examples/plugins/example.ts";
import { type CliResult, UserHome } from "./_flash-live.ts";
import { flashedSectors } from "./_record.ts";
import {
  fatList,
  fatRead,
  fmt,
  makeUserKeys,
  type Patch,
  patchedBootPartition,
  SECRETS,
  sh,
  UserLogin,
  type UserKeys,
  wpaPassphrasePsk,
  writeConfig,
} from "./_customize-checks.ts";

const EXAMPLE_PLUGIN = join(import.meta.dir, "..", "..", "examples", "plugins", "example.ts");
const EXAMPLE_UNIT = "example-app-e2e";

const boards: Board[] = [];
const homes: UserHome[] = [];
afterEach(async () => {
  for (const b of boards.splice(0)) await b.stop();
});
afterAll(() => {
  for (const h of homes.splice(0)) h.cleanup();
});

// TCG on two cores shared with other boards: a 1.3 GiB write alone has taken 10 minutes.
const CASE_TIMEOUT_MS = 3_600_000;
const since = (t: number) => (performance.now() - t) / 1000;
const RUN_ARGS = "systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target";

async function boardWithHome(image: ImageName = "A") {
  // root: the CLI's own login must survive the take-over of pi (UID 1000) by `user=`.
  const board = await startBoard({ image, holdAtReboot: true, user: "root" });
  boards.push(board);
  const home = new UserHome();
  homes.push(home);
  await home.trustBoard(board);
  return { board, home };
}

interface Flashed {
  img: BoardImage;
  cli: CliResult;
  patches: Patch[];
  patchBytes: number;
  fat: string;
  bootIdBefore: string;
  resumedAt: number;
  /** board.boots.length just before resume(): later entries are the new image's boots. */
  bootsAtResume: number;
  timings: Record<string, number>;
}

/**
 * Run `flash --config`, hold the board at its reboot, check disk == image + dumped sectors and the
 * patched boot partition, then let it boot (the runner boots every further reboot by itself).
 */
async function flashWithConfig(
  board: Board,
  home: UserHome,
  image: ImageName,
  file: "xz" | "gz",
  extra: string[],
  hostname: string,
  env: Record<string, string> = {},
): Promise<Flashed> {
  const img = await ensureImage(image, file);
  const conf = writeConfig(home, hostname);
  const dump = home.path("patch");
  const bootIdBefore = await board.bootId();
  const t0 = performance.now();
  let cliDone: CliResult | undefined;
  const cliRun = home
    .run(["flash", "board", img[file], "--yes", "--config", conf, "--accept-new-host-key", ...extra], {
      env: { FLASH_LIVE_TEST_PATCH_OUT: dump, ...env },
      timeoutMs: 2_400_000,
    })
    .then((r) => (cliDone = r));
  // The CLI exiting before the board rebooted is a failure: show why instead of waiting out waitHeld.
  await Promise.race([board.waitHeld(1_500_000), cliRun.then((r) => Bun.sleep(5000).then(() => r))]);
  if (board.state !== "held") {
    const r = cliDone!;
    throw new Error(`the CLI exited ${r.code} before the board rebooted:\n${r.stdout}\n${r.stderr}`);
  }
  const held = since(t0);

  // The sent sectors with the flash record as the board wrote it (checked: id, image sha256, verify ok).
  const { patches, bin } = await flashedSectors(board, img, dump, "ok");
  expect(patches.length).toBeGreaterThan(1);
  const t1 = performance.now();
  const cmp = await board.compareDisk(img.raw, { patches });
  expect(cmp).toMatchObject({ equal: true, differingSectors: 0 });
  const compare = since(t1);
  // The plain image alone must NOT match: the sectors did land (the comparison can fail).
  const plain = await board.compareDisk(img.raw);
  expect(plain.differingSectors).toBeGreaterThan(0);
  expect(plain.differingSectors).toBeLessThanOrEqual(bin.length / 512);

  // No plaintext secret in anything that was sent.
  for (const secret of [SECRETS.password, SECRETS.wifiPassword]) expect(bin.includes(Buffer.from(secret, "utf8"))).toBe(false);

  // The boot partition as the board will read it: inside partition 1 only, and a clean FAT.
  const fat = patchedBootPartition(img, patches, home.path("boot.fat"));
  const fsck = await sh(["fsck.fat", "-n", fat], { check: false });
  if (fsck.code !== 0) console.error(fsck.stdout, fsck.stderr);
  expect(fsck.code).toBe(0);

  board.holdAtReboot = false;
  const bootsAtResume = board.boots.length;
  const resumedAt = performance.now();
  await board.resume();
  const cli = await cliRun;
  if (cli.code !== 0) console.error(cli.stdout, cli.stderr);
  expect(cli.code).toBe(0);
  const out = cli.stdout + cli.stderr;
  expect(out).toContain("verified: every byte");
  expect(out).toContain("the board is back");
  for (const secret of [SECRETS.password, SECRETS.wifiPassword]) expect(out).not.toContain(secret);

  return {
    img,
    cli,
    patches,
    patchBytes: bin.length,
    fat,
    bootIdBefore,
    resumedAt,
    bootsAtResume,
    timings: { held, compare, cliTotal: cli.seconds },
  };
}

/** What both mechanisms must have done, checked on the booted board. */
async function checkConfiguredBoard(board: Board, home: UserHome, keys: UserKeys, hostname: string) {
  const root = (cmd: string, stdin?: string) => board.ssh(cmd, { user: "root", stdin, timeoutMs: 300_000 });
  // Where the checks' time goes (printed with the case's timings).
  const laps: string[] = [];
  let tLap = performance.now();
  const lap = (what: string) => {
    laps.push(`${what}:${((performance.now() - tLap) / 1000).toFixed(1)}`);
    tLap = performance.now();
  };

  // Host name, and /etc/hosts agrees (sudo resolves it: no "unable to resolve host").
  const names = (await root('hostname; cat /etc/hostname; getent hosts "$(hostname)"')).stdout.split("\n");
  expect(names[0]).toBe(hostname);
  expect(names[1]).toBe(hostname);
  expect(names[2]).toMatch(new RegExp(`^127\\.\\S+\\s+(.*\\s)?${hostname}(\\s|$)`));
  lap("names");

  // The image's UID 1000 account became the new user (no pi left), with its home.
  const account = await root(`getent passwd ${SECRETS.user}; getent passwd pi >/dev/null && echo pi-present || echo pi-absent; id -nG ${SECRETS.user}`);
  const [pw, pi, groups] = account.stdout.trim().split("\n");
  const [name, , uid, , , homeDir, shell] = pw!.split(":");
  expect({ name, uid, homeDir, shell }).toEqual({ name: SECRETS.user, uid: "1000", homeDir: `/home/${SECRETS.user}`, shell: "/bin/bash" });
  expect(pi).toBe("pi-absent");
  expect(groups!.split(" ")).toContain("sudo");
  const authorized = (await root(`cat /home/${SECRETS.user}/.ssh/authorized_keys; stat -c %a /home/${SECRETS.user}/.ssh/authorized_keys`)).stdout;
  for (const pub of keys.pubs) expect(authorized).toContain(pub);
  lap("account");

  // The user logs in with EACH key (OpenSSH, that key only, host key from ssh-keyscan).
  const login = new UserLogin(home, board, SECRETS.user);
  await login.learnHostKey();
  for (const key of keys.keys) {
    const r = await login.withKey(key, "id -un");
    if (r.code !== 0) console.error(r.stderr);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(SECRETS.user);
  }
  lap("keys");

  // The password: sudo takes it (on stdin) and refuses a wrong one. `sudo -v` asks for it even
  // when a NOPASSWD rule exists, since the %sudo rule has none (sudoers verifypw=all).
  const sudo = await login.withKey(keys.keys[0]!, "sudo -S -k -p '' true && sudo -S -k -p '' -v && echo sudo-ok", `${SECRETS.password}\n${SECRETS.password}\n`);
  if (sudo.stdout.trim() !== "sudo-ok") console.error(`sudo as ${SECRETS.user}: exit ${sudo.code}\n${sudo.stderr}`);
  expect(sudo.stderr).not.toContain("unable to resolve host");
  expect(sudo.stdout.trim()).toBe("sudo-ok");
  // One wrong line: sudo's next try reads the end of stdin and gives up (each failed try costs PAM's 2 s delay).
  const wrong = await login.withKey(keys.keys[0]!, "sudo -S -k -p '' -v && echo sudo-ok", "not the password\n");
  expect(wrong.code).not.toBe(0);
  expect(wrong.stdout).not.toContain("sudo-ok");
  const sudoers = (await root(`sudo -l -U ${SECRETS.user}`)).stdout;
  lap("sudo");

  // ...and SSH password logins (ssh-password-auth defaults to on when a password is set).
  const byPassword = await login.withPassword(SECRETS.password, "id -un");
  if (byPassword.code !== 0) console.error(byPassword.stderr);
  expect(byPassword.stdout.trim()).toBe(SECRETS.user);
  expect((await login.withPassword("not the password", "id -un")).code).not.toBe(0);
  lap("passwords");

  // Time zone.
  const tz = (await root("readlink -f /etc/localtime; date +%Z")).stdout.trim().split("\n");
  expect(tz[0]).toBe(`/usr/share/zoneinfo/${SECRETS.timezone}`);
  expect(["EET", "EEST"]).toContain(tz[1]);
  lap("tz");

  // No plaintext secret anywhere on the board's disk (patterns on stdin, never in argv).
  const grep = await board.ssh("grep -rlsF -D skip -f - /boot /etc /home /root /var /run /tmp; echo grep-done", {
    user: "root",
    stdin: `${SECRETS.password}\n${SECRETS.wifiPassword}\n`,
    timeoutMs: 600_000,
  });
  expect(grep.stdout.trim()).toBe("grep-done");
  lap("grep");

  return { sudoers, laps: laps.join(" ") };
}

/** The PSK by wpa_supplicant's own tool, for the adversarial SSID and passphrase. */
const expectedPsk = () => wpaPassphrasePsk(SECRETS.wifiSsid, SECRETS.wifiPassword);

describe("first-boot customization", () => {
  test("cloud-init: B-cloud (.img.xz, ramfs) onto A with hostname, user, password, two keys, Wi-Fi, time zone", async () => {
    const { board, home } = await boardWithHome("A");
    const keys = await makeUserKeys(home);
    const hostname = "seabird";
    const f = await flashWithConfig(board, home, "B-cloud", "xz", ["--ramfs"], hostname);
    expect(f.cli.stdout + f.cli.stderr).toMatch(/customize .*via cloud-init on partition 1 \(/);

    // The seed on the boot partition, read back with mtools from image + patch.
    const files = await fatList(f.fat);
    expect(files).toEqual(expect.arrayContaining(["user-data", "meta-data", "network-config", "cmdline.txt"]));
    const userData = (await fatRead(f.fat, "user-data"))!;
    expect(userData.startsWith("#cloud-config\n")).toBe(true);
    const ud = parseYaml(userData) as Record<string, any>;
    expect(ud.hostname).toBe(hostname);
    expect(ud.timezone).toBe(SECRETS.timezone);
    expect(ud.users[0].name).toBe(SECRETS.user);
    expect(ud.users[0].ssh_authorized_keys).toEqual(keys.pubs);
    // The hash is of the password exactly (openssl as the oracle; password on stdin).
    const hash: string = ud.users[0].hashed_passwd;
    const salt = hash.split("$")[2]!;
    expect((await sh(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], { stdin: `${SECRETS.password}\n` })).stdout.trim()).toBe(hash);
    const psk = await expectedPsk();
    const seedNet = parseYaml((await fatRead(f.fat, "network-config"))!) as any;
    expect(seedNet.network.wifis.wlan0["access-points"][SECRETS.wifiSsid]).toEqual({ password: psk });
    expect((await fatRead(f.fat, "cmdline.txt"))!.trim()).toBe(`${f.img.cmdline} cfg80211.ieee80211_regdom=${SECRETS.wifiCountry}`);

    // Boot: SSH, then cloud-init finishes its stages.
    const bootId = await board.waitForReboot(f.bootIdBefore, 600_000);
    const up = since(f.resumedAt);
    expect(board.boots.slice(f.bootsAtResume).map((b) => b.kind)).toEqual(["cold"]);
    expect((await board.ssh("cat /etc/image-id")).stdout.trim()).toBe(f.img.marker);
    const st = await board.ssh("timeout 900 cloud-init status --wait >/dev/null; cloud-init status --format json", { check: false, timeoutMs: 960_000 });
    const configured = since(f.resumedAt);
    const status = JSON.parse(st.stdout) as { status: string; errors: string[]; recoverable_errors: Record<string, string[]> };
    expect(status.status).toBe("done");
    expect(status.errors).toEqual([]);
    // A WARNING means a setting was not applied (e.g. "'passwd' ... ignored for existing user").
    expect(status.recoverable_errors?.WARNING ?? []).toEqual([]);
    expect(status.recoverable_errors?.ERROR ?? []).toEqual([]);

    const tChecks = performance.now();
    const { sudoers, laps } = await checkConfiguredBoard(board, home, keys, hostname);
    const checks = since(tChecks);

    // The seed as the board sees it: still the network-config that was sent.
    const net = await board.ssh("stat -c '%a %U' /boot/firmware/network-config; findmnt -no OPTIONS /boot/firmware; cat /boot/firmware/network-config", { user: "root" });
    const [modeLine, mountOpts, ...yamlLines] = net.stdout.split("\n");
    const onBoard = parseYaml(yamlLines.join("\n")) as any;
    expect(onBoard.network.wifis.wlan0["access-points"][SECRETS.wifiSsid].password).toBe(psk);
    expect(onBoard.network.wifis.wlan0["regulatory-domain"]).toBe(SECRETS.wifiCountry);

    // ...and root-only: the bootcmd remounted the FAT with fmask/dmask 0077 and put them in fstab.
    expect(mountOpts!.split(",")).toEqual(expect.arrayContaining(["fmask=0077", "dmask=0077"]));
    expect((await board.ssh("findmnt --fstab -no OPTIONS /boot/firmware", { user: "root" })).stdout.trim().split(",")).toEqual(expect.arrayContaining(["fmask=0077", "dmask=0077"]));
    const seedModes = (await board.ssh("stat -c '%a %U %n' /boot/firmware /boot/firmware/user-data /boot/firmware/meta-data /boot/firmware/network-config", { user: "root" })).stdout.trim().split("\n");
    for (const line of seedModes) {
      const [mode, owner] = line.split(" ");
      expect({ line, other: Number.parseInt(mode!, 8) & 0o077, owner }).toEqual({ line, other: 0, owner: "root" });
    }
    const asNobody = await board.ssh("for f in user-data meta-data network-config; do sudo -u nobody cat /boot/firmware/$f >/dev/null 2>&1 && echo readable:$f; done; sudo -u nobody ls /boot/firmware >/dev/null 2>&1 && echo listable; echo checked", { user: "root" });
    expect(asNobody.stdout.trim()).toBe("checked");

    // Wi-Fi rendered by cloud-init through netplan (systemd-networkd): root-only, SSID and PSK.
    const netplan = await board.ssh("for f in /etc/netplan/*; do stat -c '%a %U %n' \"$f\"; done", { user: "root" });
    const netplanFiles = netplan.stdout.trim().split("\n").map((l) => l.split(" ")) as [string, string, string][];
    expect(netplanFiles.length).toBeGreaterThan(0);
    for (const [mode, owner, path] of netplanFiles) expect({ path, mode, owner }).toEqual({ path, mode: "600", owner: "root" });
    const wifiDocs: any[] = [];
    for (const [, , path] of netplanFiles) {
      const doc = parseYaml((await board.ssh(`cat ${path}`, { user: "root" })).stdout) as any;
      if (doc?.network?.wifis) wifiDocs.push(doc.network.wifis);
    }
    expect(wifiDocs).toHaveLength(1);
    // netplan's API (which cloud-init writes through) spells `password:` out as `auth:`.
    const ap = wifiDocs[0].wlan0?.["access-points"]?.[SECRETS.wifiSsid];
    if (!ap?.auth) console.error(`[customize e2e] rendered wlan0: ${JSON.stringify(Object.keys(wifiDocs[0].wlan0 ?? {}))}, access points ${JSON.stringify(Object.keys(wifiDocs[0].wlan0?.["access-points"] ?? {}))}`);
    expect(ap.auth).toEqual({ "key-management": "psk", password: psk });
    expect(wifiDocs[0].wlan0["regulatory-domain"]).toBe(SECRETS.wifiCountry);
    // The plaintext passphrase nowhere in the network config, rendered or seed (pattern on stdin).
    const plain = await board.ssh("grep -rlsF -f - /etc/netplan /run/netplan /run/systemd/network /boot/firmware; echo grep-done", {
      user: "root",
      stdin: `${SECRETS.wifiPassword}\n`,
    });
    expect(plain.stdout.trim()).toBe("grep-done");
    // ...and in use: wpa_supplicant runs on wlan0 (the image's simulated radio) from netplan's
    // root-only file with the PSK.
    const wpa = (await board.ssh(`systemctl is-active netplan-wpa-wlan0.service; stat -c '%a %U' /run/netplan/wpa-wlan0.conf; grep -cE '^[[:space:]]*psk=${psk}$' /run/netplan/wpa-wlan0.conf`, { user: "root", check: false })).stdout.trim().split("\n");
    expect(wpa).toEqual(["active", "600 root", "1"]);
    const rendered = await board.ssh("stat -c '%a %n' /run/netplan/* 2>&1; ls /run/systemd/network 2>&1; networkctl list --no-legend 2>&1; true", { user: "root" });
    expect((await board.ssh("cat /proc/sys/kernel/random/boot_id")).stdout.trim()).toBe(bootId);
    // What held sshd back in this boot (the suite's longest wait).
    const chain = await board.ssh("systemd-analyze critical-chain ssh.service --no-pager 2>&1 | tail -n +3 | head -12; true", { user: "root" });
    // And inside cloud-init: its slowest modules and stages.
    const blame = await board.ssh("cloud-init analyze blame 2>&1 | grep -E '^ *[0-9.]+s' | head -10; true", { user: "root" });

    console.log(
      `[customize e2e] cloud-init: ${fmt({
        ...f.timings,
        bootToSsh: up,
        bootToConfigured: configured,
        checks,
        laps: JSON.stringify(laps),
        extents: f.patches.length,
        patchBytes: f.patchBytes,
        networkConfigMode: modeLine,
        bootMount: mountOpts,
        netplan: JSON.stringify(netplan.stdout.trim()),
        renderedNetwork: JSON.stringify(rendered.stdout.trim()),
        recoverable: JSON.stringify(status.recoverable_errors),
      })}\n  sudo -l: ${sudoers.trim().split("\n").slice(-3).join(" | ")}\n  ssh.service critical chain: ${chain.stdout.trim().split("\n").map((l) => l.trim()).join(" < ")}\n  cloud-init analyze blame: ${blame.stdout.trim().split("\n").map((l) => l.trim()).join(" | ")}`,
    );
  }, CASE_TIMEOUT_MS);

  test("firstrun.sh: B (.img.gz, stream) onto A, no cloud-init: same settings, cmdline.txt restored", async () => {
    const { board, home } = await boardWithHome("A");
    const keys = await makeUserKeys(home);
    // The CLI logs in as pi, whom user= takes over (renamed to skipper): after the reboot it must
    // find its way back in as the configured user, with the user's key (the second IdentityFile).
    await home.trustBoard(board, "board", { user: "pi", identities: [keys.keys[0]!] });
    const hostname = "tern-2";
    // issue 4: the example plugin, loaded from the environment layer, adds a service pattern to stop
    // and a file on the boot partition. A unit it matches runs on the board.
    await board.ssh(`systemd-run --unit=${EXAMPLE_UNIT} sleep infinity`, { user: "root" });
    const f = await flashWithConfig(board, home, "B", "gz", ["--stream"], hostname, { FLASH_LIVE_PLUGINS: `+${EXAMPLE_PLUGIN}` });
    const cliOut = f.cli.stdout + f.cli.stderr;
    expect(cliOut).toMatch(new RegExp(`stops +.*${EXAMPLE_UNIT}\\.service`));
    expect(cliOut).toContain(`stopping ${EXAMPLE_UNIT}.service`);
    expect(cliOut).toContain("[example] handoff: starting");
    expect(f.cli.stdout + f.cli.stderr).toMatch(/customize .*via firstrun\.sh on partition 1 \(/);
    expect(f.cli.stdout + f.cli.stderr).toContain(`(logged in as ${SECRETS.user}, the configured user)`);

    const files = await fatList(f.fat);
    expect(files).toContain("firstrun.sh");
    expect(files).not.toContain("user-data");
    const cmdlineSent = (await fatRead(f.fat, "cmdline.txt"))!.trim();
    expect(cmdlineSent).toBe(`${f.img.cmdline} cfg80211.ieee80211_regdom=${SECRETS.wifiCountry} ${RUN_ARGS}`);
    const script = (await fatRead(f.fat, "firstrun.sh"))!;
    expect((await sh(["sh", "-n"], { stdin: script, check: false })).code).toBe(0);

    // Boot 1 runs firstrun.sh (no sshd: kernel-command-line.target) and reboots; boot 2 answers.
    await board.waitForReboot(f.bootIdBefore, 900_000);
    const configured = since(f.resumedAt);
    const newBoots = board.boots.slice(f.bootsAtResume);
    expect(newBoots.map((b) => b.kind)).toEqual(["cold", "cold"]);
    const firstrunBoot = (newBoots[1]!.at - newBoots[0]!.at) / 1000;
    expect((await board.ssh("cat /etc/image-id")).stdout.trim()).toBe(f.img.marker);

    const log = (await board.ssh("cat /var/log/flash-live-firstrun.log; stat -c %a /var/log/flash-live-firstrun.log", { user: "root" })).stdout;
    expect(log).toContain("flash-live firstrun.sh finished");
    const failedSteps = /failed steps:(.*)$/m.exec(log)?.[1]?.trim();

    // cmdline.txt restored (only the regulatory domain stays, as with Imager), script gone.
    const boot = await board.ssh("cat /boot/firmware/cmdline.txt; ls /boot/firmware; cat /proc/cmdline", { user: "root" });
    const [cmdline, ...rest] = boot.stdout.trim().split("\n");
    expect(cmdline).toBe(`${f.img.cmdline} cfg80211.ieee80211_regdom=${SECRETS.wifiCountry}`);
    expect(rest.join("\n")).not.toContain("firstrun.sh");
    expect(rest.at(-1)).not.toContain("systemd.run");

    const tChecks = performance.now();
    const { laps } = await checkConfiguredBoard(board, home, keys, hostname);
    const checks = since(tChecks);
    // The example plugin's file, on the boot partition of the flashed board.
    expect((await board.ssh(`cat /boot/firmware/${EXAMPLE_BOOT_FILE}`, { user: "root" })).stdout).toBe(EXAMPLE_BOOT_TEXT);

    // Wi-Fi: no NetworkManager on this image, so wpa_supplicant.conf, root-only, PSK and hex SSID.
    const psk = await expectedPsk();
    const wpa = (await board.ssh("stat -c '%a %U' /etc/wpa_supplicant/wpa_supplicant.conf; cat /etc/wpa_supplicant/wpa_supplicant.conf", { user: "root" })).stdout;
    const [wpaMode, ...wpaConf] = wpa.split("\n");
    expect(wpaMode).toBe("600 root");
    const conf = wpaConf.join("\n");
    expect(conf).toContain(`\tpsk=${psk}\n`);
    expect(conf).toContain(`\tssid=${Buffer.from(SECRETS.wifiSsid, "utf8").toString("hex")}\n`);
    expect(conf).toContain(`country=${SECRETS.wifiCountry}\n`);
    const networkd = await board.ssh("stat -c '%n %a' /etc/wpa_supplicant/wpa_supplicant-wlan0.conf /etc/systemd/network/25-flash-live-wlan0.network 2>&1; true", { user: "root" });

    console.log(
      `[customize e2e] firstrun: ${fmt({
        ...f.timings,
        firstrunBoot,
        secondBootToSsh: board.timings.bootToSshSeconds ?? NaN,
        bootToConfigured: configured,
        checks,
        laps: JSON.stringify(laps),
        extents: f.patches.length,
        patchBytes: f.patchBytes,
        failedSteps: JSON.stringify(failedSteps),
        networkd: JSON.stringify(networkd.stdout.trim()),
      })}`,
    );
    if (failedSteps !== "none") console.log(`[customize e2e] firstrun log:\n${log}`);
    // This image has systemd-networkd but no wpa_supplicant: the Wi-Fi step writes its files
    // (checked above) and says what to install, without failing.
    expect(failedSteps).toBe("none");
    const hasWpa = (await board.ssh("command -v wpa_supplicant >/dev/null && echo yes || echo no", { user: "root" })).stdout.trim() === "yes";
    if (!hasWpa) expect(log).toContain("until the package wpasupplicant is installed");
  }, CASE_TIMEOUT_MS);

  test("an invalid config is refused before anything happens, naming file:line", async () => {
    const { board, home } = await boardWithHome("A");
    const img = await ensureImage("B", "gz");
    const before = await board.bootId();
    const conf = home.path("bad.conf");
    await Bun.write(conf, "# a typo in the host name\n\nhostname=bad_name!\nuser=skipper\npassword=x\n");
    const dump = home.path("patch");
    const r = await home.run(["flash", "board", img.gz, "--yes", "--config", conf, "--accept-new-host-key"], { env: { FLASH_LIVE_TEST_PATCH_OUT: dump }, timeoutMs: 300_000 });
    const out = r.stdout + r.stderr;
    expect(r.code).not.toBe(0);
    expect(out).toContain(`${conf}:3: hostname: "bad_name!" is not a valid host name`);
    expect(out).toContain("RFC 1123");
    // Nothing reached the board: same boot, no work dir, nothing sent.
    expect(await board.bootId()).toBe(before);
    expect((await board.ssh("ls -d /dev/shm/flash-live-* 2>/dev/null | wc -l")).stdout.trim()).toBe("0");
    expect(readdirSync(home.dir).filter((n) => n.startsWith("patch"))).toEqual([]);
    expect((await board.ssh("cat /etc/image-id")).stdout.trim()).toBe("A");
    console.log(`[customize e2e] refused in ${r.seconds.toFixed(1)} s: ${out.trim().split("\n").slice(0, 3).join(" | ")}`);
  });
});
