/**
 * The test harness can never flash this machine, by construction:
 * - tests/preload.ts sets FLASH_LIVE_HARNESS=1 in every test process;
 * - with it set, planFlash refuses any target whose facts lack /etc/flash-live-test-board, a file
 *   that exists only inside the QEMU board images built by tests/harness;
 * - the staged work directory then carries a `harness` marker, and src/helpers/flash.sh itself
 *   refuses to write unless /etc/flash-live-test-board exists on the machine it runs on;
 * - e2e tests reach boards only through their forwarded 127.0.0.1 ports.
 * So even a test that mistakenly targets "local" or a real host stops at the plan.
 */
export function isHarness(): boolean {
  return process.env.FLASH_LIVE_HARNESS === "1";
}

/** Test-only fault injection (issue 5): honoured only under the harness, on a test board. */
export function faultScript(): string | undefined {
  if (!isHarness()) return undefined;
  return process.env.FLASH_LIVE_TEST_FAULT || undefined;
}

/** Test-only: where to save the customization sectors so a test can compare the disk with image + patch. */
export function patchDumpPath(): string | undefined {
  if (!isHarness()) return undefined;
  return process.env.FLASH_LIVE_TEST_PATCH_OUT || undefined;
}
