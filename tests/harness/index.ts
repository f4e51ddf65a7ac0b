/** The board harness in one import: images, boards, and the pieces tests check against. */
export { type Board, type BoardOptions, type BoardState, type BoardTimings, type DiskBus, type DiskComparison, type ExtraDisk, GiB, MiB, makeDataDisk, type SshOptions, startBoard } from "./board.ts";
export { type BoardImage, ensureImage } from "./build-image.ts";
export { parsePartitionTable, type Partition } from "./disk.ts";
export { loadBootFiles, parseConfigTxt } from "./firmware.ts";
export { cacheDir, ensureSuiteKey } from "./paths.ts";
export { BOARD_MARKER_PATH, BOARD_MARKER_TEXT, BOARD_USERS, IMAGE_NAMES, IMAGES, type ImageName } from "./recipes.ts";
export { NOT_A_BOARD_EXIT } from "./ssh.ts";
