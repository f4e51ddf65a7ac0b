import { afterAll, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { EXAMPLE_BOOT_FILE, EXAMPLE_BOOT_TEXT, EXAMPLE_SERVICE } from "../../../examples/plugins/example.ts";
import { HALOS_SERVICES } from "../../../src/plugins/halos.ts";

const ROOT = resolve(import.meta.dir, "../../..");
const tmp = mkdtempSync(join(tmpdir(), "flash-live-compiled-plugins-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// The compiled binary has no source tree and no node_modules: the config and the plugin live in a
// directory outside the repo and import only the virtual modules flash-live/config and flash-live/plugin.
const bin = join(tmp, "entry");

test("a compiled binary loads a .ts config and a .ts plugin from disk and runs the plugin's hooks", async () => {
  const build = Bun.spawnSync(
    [process.execPath, "build", "--compile", "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig", join(import.meta.dir, "fixtures/compiled-entry.ts"), "--outfile", bin],
    { cwd: ROOT },
  );
  expect(build.exitCode, build.stderr.toString()).toBe(0);

  const site = join(tmp, "site");
  mkdirSync(join(site, "plugins"), { recursive: true });
  copyFileSync(join(ROOT, "examples/plugins/example.ts"), join(site, "plugins/example.ts"));
  writeFileSync(
    join(site, "flash-live.config.ts"),
    [
      'import { defineFlashLiveConfig } from "flash-live/config";',
      "const name: string = 'compiled-boat';",
      "export default defineFlashLiveConfig({",
      "  hostname: name,",
      '  services: ["own.service"],',
      '  plugins: ["./plugins/example.ts"],',
      "});",
      "",
    ].join("\n"),
  );

  const run = Bun.spawnSync([bin, site], { cwd: tmp, env: { PATH: "/usr/bin:/bin", HOME: tmp } });
  expect(run.exitCode, run.stderr.toString()).toBe(0);
  const out = JSON.parse(run.stdout.toString());
  expect(out).toEqual({
    hostname: "compiled-boat",
    plugins: ["halos", "example"],
    services: ["own.service", ...HALOS_SERVICES, EXAMPLE_SERVICE],
    files: [{ path: EXAMPLE_BOOT_FILE, data: EXAMPLE_BOOT_TEXT }],
    sources: { layer: "file", file: join(site, "flash-live.config.ts"), line: 4 },
  });
  // The example's phase and setup hooks log to stderr.
  expect(run.stderr.toString()).toContain("[example] loaded for compiled-boat");
  expect(run.stderr.toString()).toContain("[example] stage: starting");
}, 60_000);

test("in the compiled binary a broken .ts config reports its own error", () => {
  const site = join(tmp, "broken");
  mkdirSync(site, { recursive: true });
  writeFileSync(join(site, "flash-live.config.ts"), 'import x from "not-installed-anywhere";\nexport default { hostname: x };\n');
  const run = Bun.spawnSync([bin, site], { cwd: tmp, env: { PATH: "/usr/bin:/bin", HOME: tmp } });
  expect(run.exitCode).toBe(1);
  const err = run.stderr.toString();
  expect(err).toContain("not-installed-anywhere");
  expect(err).not.toContain("babel");
});
