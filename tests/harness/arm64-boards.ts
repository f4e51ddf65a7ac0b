/**
 * Whether this run boots arm64 boards (qemu-system-aarch64 under TCG: the slowest boards, ~4 min of
 * a suite run for two cases). Issue 2 lets CI skip them: under CI (CI set) they are skipped unless
 * FLASH_LIVE_ARM64_BOARDS=1; elsewhere they run unless FLASH_LIVE_ARM64_BOARDS=0. The arm64 build
 * itself is still checked in every run (tests/e2e/binary.test.ts runs it under qemu-user).
 */
export function arm64BoardsEnabled(env: Record<string, string | undefined> = process.env): boolean {
  const flag = env.FLASH_LIVE_ARM64_BOARDS;
  if (flag === "1") return true;
  if (flag === "0") return false;
  return !underCi(env);
}

function underCi(env: Record<string, string | undefined>): boolean {
  const ci = env.CI?.trim().toLowerCase();
  return ci !== undefined && ci !== "" && ci !== "0" && ci !== "false";
}

/** Why the arm64 board cases did not run, for the log; undefined when they run. */
export function arm64BoardsSkipReason(env: Record<string, string | undefined> = process.env): string | undefined {
  if (arm64BoardsEnabled(env)) return undefined;
  return env.FLASH_LIVE_ARM64_BOARDS === "0" ? "FLASH_LIVE_ARM64_BOARDS=0" : "CI is set (FLASH_LIVE_ARM64_BOARDS=1 runs them)";
}
