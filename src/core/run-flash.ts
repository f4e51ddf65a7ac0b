import * as p from "@clack/prompts";
import { consola } from "consola";
import type { FlashLiveConfig } from "../config/schema.ts";
import { runFlash, type FlashResult } from "../modes/flash.ts";
import { loadPlugins, registerPlugins } from "../plugins/load-plugins.ts";
import { UserError } from "../errors.ts";
import { formatBytes, openImage } from "../image/source.ts";
import { connectTarget, isInteractive } from "./connect.ts";
import { createFlashHooks } from "./hooks.ts";
import { fmtDuration } from "./progress.ts";
import { shellQuote } from "../util/shell.ts";
import { prepareBootFor, resolveCustomizationFor } from "./customize-step.ts";
import pkg from "../../package.json" with { type: "json" };
import type { ConfOrigins } from "../config/seed-conf.ts";

export interface FlashRequest {
  local: boolean;
  destination?: string;
  port?: number;
  imagePath: string;
  config: FlashLiveConfig;
  /** Directory plugin paths are relative to. */
  configDir: string;
  /** Where each customization value was set (FILE:LINE in messages, relative key paths). */
  origins?: ConfOrigins;
  interactive?: boolean;
}

/** `flash-live flash`: everything below the command line. */
export async function flash(req: FlashRequest): Promise<FlashResult> {
  const interactive = req.interactive ?? isInteractive();
  // Local mode ends with a hard reset of this very machine, with no exit to flush buffered output:
  // write each message straight to stderr as it happens.
  if (req.local) {
    consola.setReporters([
      { log: (o) => void process.stderr.write(`${o.type === "box" ? "" : `[${o.type}] `}${o.args.map(String).join(" ")}\n`) },
    ]);
  }
  if (!req.local && !req.destination) throw new UserError("No host given.", "Usage: flash-live flash HOST IMAGE, or flash-live flash --local IMAGE", 2);
  // Config errors (bad hostname, unreadable key file) before any connection.
  const resolved = resolveCustomizationFor(req.config, req.origins, req.configDir);
  // Known before any connection: nobody can confirm here, so do not make a script wait through the
  // whole preflight (login, image pass, link measurement) to learn it. modes/flash.ts asks the same.
  if (!(req.config.yes ?? false) && !interactive) {
    throw new UserError(
      "Refusing to overwrite a disk without confirmation in a non-interactive run.",
      `Pass --yes to confirm in scripts. To see the plan without changing anything: flash-live check ${[req.local ? "--local" : req.destination ?? "HOST", req.imagePath].map((a) => shellQuote(a)).join(" ")}`,
      2,
    );
  }
  // A missing, unreadable or cut-short image (an .xz without its index) is known here in
  // milliseconds: say so before the login (and any passphrase prompt), not after it.
  await openImage(req.imagePath);
  const hooks = createFlashHooks();
  await registerPlugins(hooks, await loadPlugins(req.config.plugins ?? [], { baseDir: req.configDir }), { config: req.config });
  const started = performance.now();
  const target = await connectTarget({ ...req, interactive });
  try {
    const res = await runFlash({
      target,
      imagePath: req.imagePath,
      local: req.local,
      mode: req.config.mode ?? "auto",
      hooks,
      services: req.config.services ?? [],
      yes: req.config.yes ?? false,
      interactive,
      verify: req.config.verify ?? true,
      bmap: req.config.bmap,
      bmapFile: req.config.bmapFile,
      record: req.config.record ?? true,
      transport: req.config.transport,
      version: pkg.version,
      prepareBoot: (ctx, image, record) => prepareBootFor(ctx, image, req.config, resolved, record),
      reconnect: req.local ? undefined : (user, limits) => connectTarget({ ...req, interactive, afterFlash: true, user, ...limits }),
      newUser: req.config.user,
      confirm: async (question, phrase) => {
        const r = await p.text({ message: question, validate: (v) => (v === phrase ? undefined : `type exactly: ${phrase}`) });
        return !p.isCancel(r) && r === phrase;
      },
    });
    const total = (performance.now() - started) / 1000;
    consola.success(
      `done in ${fmtDuration(total)}: ${formatBytes(res.written)}${res.written < res.scan.rawSize ? ` of ${formatBytes(res.scan.rawSize)} (block map)` : ""} written to ${res.plan.diskPath}, ${formatBytes(res.bytesSent)} sent, verify ${res.verified}`,
    );
    for (const w of res.warnings) consola.warn(w);
    return res;
  } finally {
    await target.close().catch(() => {});
  }
}
