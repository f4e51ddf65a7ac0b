import * as p from "@clack/prompts";
import { consola } from "consola";
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
  /**
   * After a re-flash the board presents the new image's host key. Replace the old known_hosts entry
   * when the user said so (--accept-new-host-key) or confirms it; otherwise refuse as ssh does.
   */
  afterFlash?: boolean;
  /** Log in as this user instead of the one from the destination / ssh config. */
  user?: string;
  /** Limits of one attempt while polling a rebooting board (connectSsh's options of the same names). */
  connectTimeoutMs?: number;
  bannerTimeoutMs?: number;
}

/** The one place that turns "HOST or --local" into a Target. */
export async function connectTarget(o: ConnectOptions): Promise<Target> {
  if (o.local) return createLocalTarget();
  return connectSsh({
    destination: o.destination!,
    port: o.port,
    user: o.user,
    identityFile: o.config.identityFile,
    sshConfigFile: o.config.sshConfigFile,
    knownHostsFile: o.config.knownHostsFile,
    acceptNewHostKey: o.config.acceptNewHostKey ?? false,
    interactive: o.interactive,
    connectTimeoutMs: o.connectTimeoutMs,
    bannerTimeoutMs: o.bannerTimeoutMs,
    prompt: o.interactive ? ask : undefined,
    // Known-hosts notes and why a connection ended (ssh2's error), shown with CONSOLA_LEVEL=4.
    log: (m) => consola.debug(m),
    onHostKeyChanged: o.afterFlash
      ? async (change) => {
          if (o.config.acceptNewHostKey) {
            consola.info(`the re-flashed board has a new host key (${change.fingerprint}); replacing ${change.name} in ${change.knownHostsFile} (--accept-new-host-key)`);
            return true;
          }
          if (!o.interactive) return false;
          const r = await p.confirm({
            message: `The re-flashed board presents a new host key ${change.fingerprint} (expected: the new image has its own keys). Replace the old entry for ${change.name} in ${change.knownHostsFile}?`,
          });
          return r === true;
        }
      : undefined,
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
