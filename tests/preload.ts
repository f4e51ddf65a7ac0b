// Loaded before every test file (bunfig.toml [test].preload).
// FLASH_LIVE_HARNESS marks this process as the test harness: with it set, flash-live refuses to run
// its destructive helper on any target that lacks the board marker /etc/flash-live-test-board,
// which exists only inside the QEMU board images (tests/harness). So a test can never flash
// this machine, even by mistake (see src/core/safety.ts).
process.env.FLASH_LIVE_HARNESS = "1";
export {};
