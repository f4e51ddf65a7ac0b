import { connect as netConnect } from "node:net";
import { BOARD_MARKER_PATH } from "./recipes.ts";

/**
 * OpenSSH client argv for talking to a board. Only ever 127.0.0.1 (a QEMU hostfwd port the runner
 * opened) with the suite key; no ~/.ssh/config, agent or user known_hosts is consulted.
 */
export interface SshEndpoint {
  port: number;
  keyPath: string;
  /** Per-board temporary known_hosts, emptied at every boot (the host key changes with the image). */
  knownHostsFile: string;
  /**
   * Connection sharing (ControlMaster) socket dir: a login on a TCG board costs 2-5 s (sshd
   * execs, PAM, logind), a new channel on a shared connection a fraction of that. The master dies
   * with the guest's TCP connection when QEMU exits, so a reboot always gets a fresh login.
   */
  controlDir?: string;
}

export function sshOptions(ep: SshEndpoint, connectTimeoutS = 10): string[] {
  return [
    "-F", "/dev/null",
    "-i", ep.keyPath,
    "-o", "IdentitiesOnly=yes",
    "-o", "IdentityAgent=none",
    "-o", "BatchMode=yes",
    "-o", "StrictHostKeyChecking=no",
    "-o", `UserKnownHostsFile=${ep.knownHostsFile}`,
    "-o", "GlobalKnownHostsFile=/dev/null",
    "-o", `ConnectTimeout=${connectTimeoutS}`,
    "-o", "ServerAliveInterval=5",
    "-o", "ServerAliveCountMax=6",
    "-o", "LogLevel=ERROR",
    ...(ep.controlDir ? ["-o", "ControlMaster=auto", "-o", `ControlPath=${ep.controlDir}/cm-%r`, "-o", "ControlPersist=60"] : []),
  ];
}

export function sshArgv(ep: SshEndpoint, user: string, command: string, connectTimeoutS?: number): string[] {
  return ["ssh", ...sshOptions(ep, connectTimeoutS), "-p", String(ep.port), `${user}@127.0.0.1`, "--", guarded(command)];
}

export function scpArgv(ep: SshEndpoint, user: string, local: string, remote: string): string[] {
  return ["scp", "-q", ...sshOptions(ep), "-P", String(ep.port), local, `${user}@127.0.0.1:${remote}`];
}

/** Exit status of a command refused because the machine is not a test board. */
export const NOT_A_BOARD_EXIT = 97;

/**
 * Every command the harness runs remotely first checks for the board marker, which exists only in
 * board images: on any other machine the command is refused before it starts.
 */
export function guarded(command: string): string {
  return `[ -e ${BOARD_MARKER_PATH} ] || { echo "refusing: no ${BOARD_MARKER_PATH}, this is not a flash-live test board" >&2; exit ${NOT_A_BOARD_EXIT}; }; ${command}`;
}

/**
 * Whether an SSH server answers on 127.0.0.1:`port`: its version line ("SSH-...") within `timeoutMs`
 * on a fresh connection, without logging in. QEMU's user network accepts a connection at once for a
 * guest that is still booting and then holds it while its SYNs to the guest back off, so an ssh
 * started then waits out its ConnectTimeout after sshd is up; this probe gives up quickly instead.
 */
export function sshBanner(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = netConnect({ host: "127.0.0.1", port });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.once("data", (d: Buffer) => done(d.toString("latin1").startsWith("SSH-")));
    sock.once("error", () => done(false));
    sock.once("close", () => done(false));
  });
}
