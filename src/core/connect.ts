import * as p from "@clack/prompts";
import type { FlashLiveConfig } from "../config/schema.ts";
import { CancelledError } from "../errors.ts";
import { createLocalTarget } from "../target/local.ts";
import { connectSsh } from "../target/ssh.ts";
import type { Target } from "../target/types.ts";

export interface ConnectOptions {
  local: boolean;
  destination?: string;
  port?: number;
  config: FlashLiveConfig;
  interactive: boolean;
}

/** The one place that turns "HOST or --local" into a Target. */
export async function connectTarget(o: ConnectOptions): Promise<Target> {
  if (o.local) return createLocalTarget();
  return connectSsh({
    destination: o.destination!,
    port: o.port,
    identityFile: o.config.identityFile,
    sshConfigFile: o.config.sshConfigFile,
    knownHostsFile: o.config.knownHostsFile,
    acceptNewHostKey: o.config.acceptNewHostKey ?? false,
    interactive: o.interactive,
    prompt: o.interactive ? ask : undefined,
  });
}

async function ask(question: string, opts: { secret: boolean }): Promise<string> {
  const r = opts.secret ? await p.password({ message: question }) : await p.text({ message: question });
  if (p.isCancel(r)) throw new CancelledError();
  return r;
}

export function isInteractive(): boolean {
  return Boolean(process.stdin.isTTY && process.stdout.isTTY) && process.env.CI !== "true";
}
