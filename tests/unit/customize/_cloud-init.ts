// cloud-init's own schema check (`cloud-init schema --config-file`) as the oracle for user-data.
// Uses an installed cloud-init, else Debian's cloud-init package unpacked (not installed: no
// services on this machine) into a cache, run with Debian's python3 and its python3-* libraries
// (python3-jsonschema python3-yaml python3-jinja2 python3-configobj python3-requests
// python3-jsonpatch python3-netifaces; see scripts/deps.sh).
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "./_images.ts";

let cached: ((file: string) => { ok: boolean; output: string }) | undefined;

export function cloudInitSchema(): (file: string) => { ok: boolean; output: string } {
  if (cached) return cached;
  if (Bun.which("cloud-init")) {
    cached = (file) => {
      const r = run(["cloud-init", "schema", "--config-file", file], { ok: false });
      return { ok: r.code === 0, output: r.stdout + r.stderr };
    };
    return cached;
  }
  const root = join(tmpdir(), "flash-live-cloud-init-deb");
  const lib = join(root, "usr/lib/python3/dist-packages");
  if (!existsSync(join(lib, "cloudinit"))) {
    mkdirSync(root, { recursive: true });
    run(["sh", "-c", 'cd "$1" && apt-get download cloud-init >/dev/null 2>&1 && dpkg -x cloud-init_*.deb .', "sh", root]);
    if (!readdirSync(root).some((f) => f.endsWith(".deb"))) throw new Error("could not fetch Debian's cloud-init package (apt-get download cloud-init)");
  }
  const runner = join(root, "schema.py");
  writeFileSync(runner, 'import sys\nsys.argv = ["cloud-init", "schema", "--config-file", sys.argv[1]]\nfrom cloudinit.cmd.main import main\nsys.exit(main())\n');
  cached = (file) => {
    const p = Bun.spawnSync(["/usr/bin/python3", runner, file], { env: { ...process.env, PYTHONPATH: lib }, stdout: "pipe", stderr: "pipe" });
    return { ok: p.exitCode === 0, output: p.stdout.toString() + p.stderr.toString() };
  };
  return cached;
}
