import { describe, expect, spyOn, test } from "bun:test";
import { join, resolve } from "node:path";
import { createFlashHooks, type BootFile, type PartitionProbe } from "../../../src/core/hooks.ts";
import type { FlashContext } from "../../../src/core/context.ts";
import { UserError } from "../../../src/errors.ts";
import { loadFlashConfig } from "../../../src/config/load.ts";
import { definePlugin } from "../../../src/plugins/define-plugin.ts";
import { loadPlugins, registerPlugins } from "../../../src/plugins/load-plugins.ts";
import { HALOS_SERVICES } from "../../../src/plugins/halos.ts";
import { EXAMPLE_BOOT_FILE, EXAMPLE_BOOT_TEXT, EXAMPLE_SERVICE } from "../../../examples/plugins/example.ts";

const ROOT = resolve(import.meta.dir, "../../..");
const FIX = join(import.meta.dir, "fixtures");
const ctx = { warnings: [] } as unknown as FlashContext;

async function servicesWith(plugins: Awaited<ReturnType<typeof loadPlugins>>, initial: string[] = []) {
  const hooks = createFlashHooks();
  await registerPlugins(hooks, plugins);
  const services = [...initial];
  await hooks.callHook("services:resolve", ctx, services);
  return services;
}

describe("definePlugin", () => {
  test("is the identity", () => {
    const p = { name: "x", hooks: {} };
    expect(definePlugin(p)).toBe(p);
  });
});

describe("built-in halos plugin", () => {
  test("on by default: adds the seed's services after the configured ones, without duplicates", async () => {
    const plugins = await loadPlugins([], { baseDir: ROOT });
    expect(plugins.map((p) => p.name)).toEqual(["halos"]);
    expect(await servicesWith(plugins, ["own.service", "docker"])).toEqual(["own.service", "docker", "container-*", "marine-*", "halos-*", "cockpit"]);
  });

  test("`!halos` turns it off; `halos` after it turns it back on", async () => {
    expect(await loadPlugins(["!halos"], { baseDir: ROOT })).toEqual([]);
    expect(await servicesWith(await loadPlugins(["!halos"], { baseDir: ROOT }), ["a"])).toEqual(["a"]);
    expect((await loadPlugins(["!halos", "halos"], { baseDir: ROOT })).map((p) => p.name)).toEqual(["halos"]);
  });

  test("unknown built-in names are refused with the list of built-ins", async () => {
    for (const entry of ["nope", "!nope"]) {
      const e = await loadPlugins([entry], { baseDir: ROOT }).catch((x) => x);
      expect(e).toBeInstanceOf(UserError);
      expect(e.hint).toContain("halos");
    }
  });
});

describe("the example plugin (examples/plugins/example.ts)", () => {
  test("loads by relative path; stops its service, adds a boot file, logs phases", async () => {
    const plugins = await loadPlugins(["./examples/plugins/example.ts"], { baseDir: ROOT });
    expect(plugins.map((p) => p.name)).toEqual(["halos", "example"]);
    const hooks = createFlashHooks();
    const log = spyOn(console, "error").mockImplementation(() => {});
    try {
      await registerPlugins(hooks, plugins, { config: { hostname: "boat" } });
      const services: string[] = [];
      await hooks.callHook("services:resolve", ctx, services);
      expect(services).toEqual([...HALOS_SERVICES, EXAMPLE_SERVICE]);

      const files: BootFile[] = [{ path: "user-data", data: "#cloud-config\n" }];
      await hooks.callHook("customize:payloads", ctx, files);
      expect(files).toEqual([
        { path: "user-data", data: "#cloud-config\n" },
        { path: EXAMPLE_BOOT_FILE, data: EXAMPLE_BOOT_TEXT },
      ]);

      await hooks.callHook("phase:before", ctx, "stage");
      await hooks.callHook("phase:after", ctx, "stage", 1530);
      expect(log.mock.calls.map((c) => c[0])).toEqual(["[example] loaded for boat", "[example] stage: starting", "[example] stage: done in 1.5 s"]);
    } finally {
      log.mockRestore();
    }
  });

  test("~/ paths expand to the given home", async () => {
    const plugins = await loadPlugins(["~/examples/plugins/example.ts"], { baseDir: "/nonexistent", home: ROOT });
    expect(plugins.map((p) => p.name)).toEqual(["halos", "example"]);
  });
});

describe("loading plugin files", () => {
  test("a plain .js plugin changes how partitions are probed", async () => {
    const plugins = await loadPlugins([join(FIX, "plain.js"), "!halos"], { baseDir: ROOT });
    const hooks = createFlashHooks();
    await registerPlugins(hooks, plugins);
    const fallback: PartitionProbe = { name: "first-fat", pick: (parts) => parts.find((p) => p.fat)?.index };
    const probes = [fallback];
    await hooks.callHook("partitions:probe", ctx, probes);
    expect(probes.map((p) => p.name)).toEqual(["label-BOOT", "first-fat"]);
    const parts = [
      { index: 1, type: "c", start: 8192, size: 1000, fat: true, label: "EFI" },
      { index: 2, type: "c", start: 9192, size: 1000, fat: true, label: "BOOT" },
    ];
    expect(probes[0]!.pick(parts)).toBe(2);
  });

  test("setup gets the hooks and the config, and may add hooks conditionally", async () => {
    const plugins = await loadPlugins([join(FIX, "setup-hook.ts"), "!halos"], { baseDir: ROOT });
    for (const [hostname, expected] of [
      ["wants-extra", [{ path: "extra.txt", data: "for wants-extra\n" }]],
      ["other", []],
    ] as const) {
      const hooks = createFlashHooks();
      await registerPlugins(hooks, plugins, { config: { hostname } });
      const files: BootFile[] = [];
      await hooks.callHook("customize:payloads", ctx, files);
      expect(files).toEqual([...expected]);
    }
  });

  test("bad plugin files are refused with the file named", async () => {
    const cases: [string, RegExp][] = [
      ["missing.ts", /Plugin not found: .*missing\.ts/],
      ["misspelled-hook.ts", /hooks unknown hook "service:resolve"/],
      ["no-default.ts", /has no default export with a name/],
      ["broken.js", /Cannot load plugin .*broken\.js/],
    ];
    for (const [file, message] of cases) {
      const e = await loadPlugins([join(FIX, file)], { baseDir: ROOT }).catch((x) => x);
      expect(e).toBeInstanceOf(UserError);
      expect(e.message).toMatch(message);
    }
  });

  test("two plugins with the same name are refused", async () => {
    await expect(loadPlugins(["./examples/plugins/example.ts", join(FIX, "same-name.ts")], { baseDir: ROOT })).rejects.toThrow(/Two plugins are named "example"/);
  });

  test("an error in setup names the plugin", async () => {
    const boom = definePlugin({
      name: "boom",
      setup() {
        throw new Error("no");
      },
    });
    await expect(registerPlugins(createFlashHooks(), [boom])).rejects.toThrow(/plugin "boom" failed in setup: no/);
  });
});

describe("plugins named in a config file", () => {
  test("paths are relative to the config file, `!halos` honoured, hooks take effect", async () => {
    const cwd = join(ROOT, "tests/fixtures/config/ts-config");
    const { config } = await loadFlashConfig({ cwd, env: {}, flags: {} });
    // baseDir would matter only for paths not anchored by the loader; use a wrong one on purpose.
    const plugins = await loadPlugins(config.plugins, { baseDir: "/nonexistent" });
    expect(plugins.map((p) => p.name)).toEqual(["fixture-local"]);
    expect(await servicesWith(plugins, config.services)).toEqual(["myapp-*", "fixture-local.service"]);
  });

  test("FLASH_LIVE_PLUGINS=+./x.ts adds a plugin to the config file's list", async () => {
    const cwd = join(ROOT, "tests/fixtures/config/ts-config");
    const { config } = await loadFlashConfig({ cwd: ROOT, configFile: join(cwd, "flash-live.config.ts"), env: { FLASH_LIVE_PLUGINS: "+./examples/plugins/example.ts" }, flags: {} });
    const plugins = await loadPlugins(config.plugins, { baseDir: ROOT });
    expect(plugins.map((p) => p.name)).toEqual(["fixture-local", "example"]);
  });
});
