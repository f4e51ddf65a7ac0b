import type { FlashLiveConfig } from "../config/schema.ts";
import { formatBytes } from "../image/source.ts";
import { preflight } from "../modes/flash.ts";
import { loadPlugins, registerPlugins } from "../plugins/load-plugins.ts";
import type { Target } from "../target/types.ts";
import { connectTarget, isInteractive } from "./connect.ts";
import type { FlashContext } from "./context.ts";
import { prepareBootFor, resolveCustomizationFor } from "./customize-step.ts";
import type { ConfOrigins } from "../config/seed-conf.ts";
import { createFlashHooks } from "./hooks.ts";
import { RECORD_FILE } from "./record.ts";

export interface CheckRequest {
  local: boolean;
  destination?: string;
  port?: number;
  imagePath?: string;
  config: FlashLiveConfig;
  configDir: string;
  origins?: ConfOrigins;
  interactive?: boolean;
}

/**
 * `check --json` output. Stable keys (schema version 1); documented in README "check --json".
 * Sizes are bytes. Absent sections are omitted, never null.
 */
export interface CheckReport {
  schema: 1;
  ok: boolean;
  target: { name: string; kind: "local" | "ssh"; reachable: boolean; auth?: string; cipher?: string; error?: string };
  refusals: string[];
  notes: string[];
  board?: {
    hostname: string;
    user: string;
    sudo: string;
    arch: string;
    model?: string;
    kernel: string;
    os?: string;
    init: string;
    root: { device?: string; fstype: string; disk?: string; diskSize?: number; diskModel?: string; problem?: string };
    partitions: { name: string; size: number; mountPoint?: string; fstype?: string }[];
    shmAvail: number;
    memTotal: number;
    tools: string[];
    servicesToStop: string[];
  };
  image?: {
    path: string;
    format: string;
    fileSize: number;
    rawSize?: number;
    sha256?: string;
    fitsDisk?: boolean;
    /** The block map in use (only its ranges are written). */
    bmap?: { path: string; mappedBytes: number };
    /** Where the flash record would go, or why there would be none. */
    record?: string;
    customization?: { mechanism: string; summary: string; patchBytes: number };
  };
  plan?: {
    mode: "ramfs" | "stream";
    reason: string;
    codec: string;
    transcode: boolean;
    transport: string;
    transportReason: string;
    /** The preflight's measurement: rates in bytes/s, and each transport's predicted seconds. */
    measured?: { rates: import("./transport.ts").Rates; estimates: import("./transport.ts").TransportEstimate[] };
    /** A copy made on this side: the image's bytes that travel, and the zero blocks written on the board instead. */
    packed?: { dataBytes: number; zeroBytes: number };
  };
}

/** The image lines a refusal made before the image's content was read cannot fill in. */
const NOT_READ = "not checked: refused before the image was read";

/** Every preflight of `flash`, changing nothing on the board. */
export async function check(req: CheckRequest): Promise<CheckReport> {
  const interactive = req.interactive ?? isInteractive();
  const resolved = resolveCustomizationFor(req.config, req.origins, req.configDir);
  const hooks = createFlashHooks();
  await registerPlugins(hooks, await loadPlugins(req.config.plugins ?? [], { baseDir: req.configDir }), { config: req.config });
  const name = req.local ? "local" : (req.destination ?? "?");
  let target: Target;
  try {
    target = await connectTarget({ local: req.local, destination: req.destination, port: req.port, config: req.config, interactive });
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    return { schema: 1, ok: false, target: { name, kind: req.local ? "local" : "ssh", reachable: false, error: msg }, refusals: [msg], notes: [] };
  }
  try {
    const ctx: FlashContext = { target, hooks, warnings: [] };
    const pf = await preflight(
      {
        target,
        local: req.local,
        mode: req.config.mode ?? "auto",
        hooks,
        services: req.config.services ?? [],
        imagePath: req.imagePath,
        bmap: req.config.bmap,
        bmapFile: req.config.bmapFile,
        record: req.config.record ?? true,
        transport: req.config.transport,
        prepareBoot: (c, image, record) => prepareBootFor(c, image, req.config, resolved, record),
      },
      ctx,
      (_name, fn) => fn(),
    );
    const { facts, plan } = pf;
    const disk = facts.root.disk;
    const mountOf = (majmin: string) => facts.mounts.filter((m) => m.majmin === majmin).at(-1);
    const report: CheckReport = {
      schema: 1,
      ok: plan.refusals.length === 0,
      target: { name: target.name, kind: target.kind, reachable: true, auth: (target as { authMethod?: string }).authMethod, cipher: (target as { cipher?: string }).cipher },
      refusals: plan.refusals,
      notes: [...plan.notes, ...ctx.warnings],
      board: {
        hostname: facts.hostname,
        user: facts.user,
        sudo: facts.sudo,
        arch: facts.arch,
        model: facts.model,
        kernel: facts.kernel,
        os: facts.os,
        init: facts.init,
        root: {
          device: facts.root.device ? `/dev/${facts.root.device.name}` : undefined,
          fstype: facts.root.mount.fstype,
          disk: disk ? `/dev/${disk.name}` : undefined,
          diskSize: disk?.sizeBytes,
          diskModel: disk?.model,
          problem: facts.root.problem,
        },
        partitions: facts.diskPartitions.map((p) => {
          const m = mountOf(p.majmin);
          return { name: `/dev/${p.name}`, size: p.sizeBytes, mountPoint: m?.mountPoint, fstype: m?.fstype };
        }),
        shmAvail: facts.shmAvail,
        memTotal: facts.memTotal,
        tools: facts.tools,
        servicesToStop: plan.units,
      },
    };
    if (pf.image) {
      report.image = {
        path: pf.image.path,
        format: pf.image.format,
        fileSize: pf.image.fileSize,
        rawSize: pf.scan?.rawSize ?? pf.image.rawSizeHint,
        sha256: pf.scan?.sha256,
        fitsDisk: disk ? (pf.scan?.rawSize ?? pf.image.rawSizeHint ?? 0) <= disk.sizeBytes : undefined,
        bmap: pf.bmap ? { path: pf.bmap.path, mappedBytes: pf.bmap.mappedBytes } : undefined,
        customization: pf.boot?.customization
          ? { mechanism: pf.boot.customization.mechanism, summary: pf.boot.customization.summary, patchBytes: pf.boot.extents.reduce((a, e) => a + e.data.length, 0) }
          : undefined,
        record: pf.boot?.record
          ? `${RECORD_FILE} on the new boot partition`
          : req.config.record === false
            ? "no (--no-record)"
            : pf.scan
              ? `none: ${pf.boot?.noRecord ?? "no boot partition edit"}`
              : NOT_READ,
      };
      report.plan = {
        mode: plan.mode,
        reason: plan.modeReason,
        codec: plan.codec,
        transcode: plan.transcode,
        transport: plan.transport,
        transportReason: plan.transportReason,
        measured: pf.transport,
        packed: pf.pack ? { dataBytes: pf.pack.dataBytes, zeroBytes: pf.pack.zeroBytes } : undefined,
      };
    }
    return report;
  } finally {
    await target.close().catch(() => {});
  }
}

/** The human table for `check`. */
export function formatCheck(r: CheckReport): string {
  const rows: [string, string][] = [];
  const add = (k: string, v: string | undefined) => v !== undefined && rows.push([k, v]);
  add("target", `${r.target.name}${r.target.reachable ? `  reachable${r.target.auth ? ` (${r.target.auth}${r.target.cipher ? `, ${r.target.cipher}` : ""})` : ""}` : "  UNREACHABLE"}`);
  if (r.target.error) add("error", r.target.error);
  const b = r.board;
  if (b) {
    add("user", `${b.user}, sudo: ${b.sudo === "ok" ? "without password" : b.sudo}`);
    add("board", `${b.hostname}  ${b.model ?? ""}  ${b.arch}`.replace(/\s+/g, " "));
    add("system", `${b.os ?? "?"}, kernel ${b.kernel}, init ${b.init}`);
    add("root", `${b.root.device ?? "?"} (${b.root.fstype}) on ${b.root.disk ?? "?"}${b.root.diskSize ? ` ${formatBytes(b.root.diskSize)}` : ""}${b.root.diskModel ? ` ${b.root.diskModel}` : ""}`);
    for (const p of b.partitions) add("  partition", `${p.name} ${formatBytes(p.size)}${p.mountPoint ? ` on ${p.mountPoint} (${p.fstype})` : ""}`);
    add("/dev/shm", `${formatBytes(b.shmAvail)} free (RAM ${formatBytes(b.memTotal)})`);
    add("tools", b.tools.join(" "));
    add("stops", b.servicesToStop.length ? b.servicesToStop.join(", ") : "no services");
  }
  const i = r.image;
  if (i) {
    add("image", `${i.path}`);
    add("  format", `${i.format}, ${formatBytes(i.fileSize)}${i.rawSize !== undefined ? ` -> ${formatBytes(i.rawSize)} raw` : ""}`);
    if (i.sha256) add("  sha256", i.sha256);
    if (i.fitsDisk !== undefined) add("  fits disk", i.fitsDisk ? "yes" : "NO");
    add("  record", i.record);
    if (i.bmap) add("  bmap", `${i.bmap.path}: ${formatBytes(i.bmap.mappedBytes)} mapped: only that is written`);
    // Refused on what the board alone rules out: the image's content (boot partition) was not read.
    const read = i.sha256 !== undefined;
    add("  customize", i.customization ? `${i.customization.mechanism}: ${i.customization.summary} (${formatBytes(i.customization.patchBytes)} of sectors)` : read ? "no" : NOT_READ);
  }
  if (r.plan) {
    add("mode", `${r.plan.mode}: ${r.plan.reason}`);
    add("transport", `${r.plan.transport}, ${r.plan.codec} on the wire: ${r.plan.transportReason}`);
    if (r.plan.packed) add("  packed", `${formatBytes(r.plan.packed.dataBytes)} of the image's bytes travel; ${formatBytes(r.plan.packed.zeroBytes)} of zero blocks are written from the board's /dev/zero`);
  }
  const w = Math.max(...rows.map(([k]) => k.length));
  const lines = rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`);
  for (const n of r.notes) lines.push(`note: ${n}`);
  lines.push(r.ok ? "\nOK: a flash would go ahead." : `\nREFUSED: a flash would not go ahead:\n${r.refusals.map((x) => `  - ${x}`).join("\n")}`);
  return lines.join("\n");
}
