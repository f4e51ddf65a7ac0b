/**
 * The one shell-quoting function. Every value that reaches a shell (the SSH adapter's command line,
 * generated firstrun.sh) goes through it. POSIX single quotes: nothing inside is special, and a
 * single quote is written as '\'' .
 */
export function shellQuote(arg: string): string {
  if (arg === "") return "''";
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(arg)) return arg;
  return `'${arg.replaceAll("'", `'\\''`)}'`;
}

export function shellJoin(argv: readonly string[]): string {
  return argv.map(shellQuote).join(" ");
}
