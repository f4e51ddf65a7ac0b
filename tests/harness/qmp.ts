import { connect, type Socket } from "node:net";
import { sleep } from "./_run.ts";

/**
 * A minimal QMP (QEMU Machine Protocol) client over the board's unix socket: commands with ids,
 * plus the event stream (SHUTDOWN tells a guest reset from a power-off, RESUME ends a restore).
 */
export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
}

export class QmpClient {
  private buffer = "";
  private nextId = 1;
  private pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private closed = false;
  readonly events: QmpEvent[] = [];
  private listeners = new Set<(e: QmpEvent) => void>();

  private constructor(private readonly socket: Socket) {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => this.onData(chunk));
    socket.on("close", () => {
      this.closed = true;
      for (const p of this.pending.values()) p.reject(new Error("QMP connection closed"));
      this.pending.clear();
    });
    socket.on("error", () => {});
  }

  /** Connect (retrying while QEMU creates the socket) and leave capabilities negotiation mode. */
  static async connect(path: string, timeoutMs = 15_000, alive: () => boolean = () => true): Promise<QmpClient> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const socket = await new Promise<Socket>((resolve, reject) => {
          const s = connect(path);
          s.once("connect", () => resolve(s));
          s.once("error", reject);
        });
        const client = new QmpClient(socket);
        await client.execute("qmp_capabilities");
        return client;
      } catch (e) {
        if (Date.now() > deadline || !alive()) throw new Error(`cannot connect to QMP at ${path}: ${(e as Error).message}`);
        await sleep(50);
      }
    }
  }

  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.closed) return Promise.reject(new Error("QMP connection closed"));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.socket.write(`${JSON.stringify({ execute: command, arguments: args, id })}\n`);
    });
  }

  /** Resolves with the first event (already seen or future) matching. */
  waitEvent(match: (e: QmpEvent) => boolean, timeoutMs: number): Promise<QmpEvent> {
    const seen = this.events.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.listeners.delete(listener);
        reject(new Error(`no matching QMP event within ${timeoutMs} ms`));
      }, timeoutMs);
      const listener = (e: QmpEvent) => {
        if (!match(e)) return;
        clearTimeout(timer);
        this.listeners.delete(listener);
        resolve(e);
      };
      this.listeners.add(listener);
    });
  }

  onEvent(fn: (e: QmpEvent) => void): void {
    this.listeners.add(fn);
  }

  close(): void {
    this.closed = true;
    this.socket.destroy();
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    for (let nl = this.buffer.indexOf("\n"); nl >= 0; nl = this.buffer.indexOf("\n")) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (!line) continue;
      const msg = JSON.parse(line) as { id?: number; return?: unknown; error?: { desc: string }; event?: string; QMP?: unknown };
      if (msg.event) {
        const e = msg as QmpEvent;
        this.events.push(e);
        for (const l of [...this.listeners]) l(e);
      } else if (msg.id !== undefined) {
        const p = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        if (msg.error) p?.reject(new Error(`QMP: ${msg.error.desc}`));
        else p?.resolve(msg.return);
      }
    }
  }
}
