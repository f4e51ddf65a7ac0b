import type { CommandDef } from "citty";

/** citty resolves subcommands for usage output internally but does not export it. */
export async function resolveSubCommand(cmd: CommandDef<any>, rawArgs: string[], parent?: CommandDef<any>): Promise<[CommandDef<any>, CommandDef<any> | undefined]> {
  const subs = await resolve(cmd.subCommands);
  if (subs && Object.keys(subs).length > 0) {
    const i = rawArgs.findIndex((a) => !a.startsWith("-"));
    const name = rawArgs[i];
    if (name && name in subs) return resolveSubCommand(await resolve((subs as any)[name]), rawArgs.slice(i + 1), cmd);
  }
  return [cmd, parent];
}

async function resolve<T>(v: T | (() => T | Promise<T>) | Promise<T>): Promise<T> {
  return typeof v === "function" ? await (v as () => T | Promise<T>)() : await v;
}
