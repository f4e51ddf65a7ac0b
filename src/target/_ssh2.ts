/**
 * ssh2, loaded after the chacha20 shim. A static `import ... from "ssh2"` would not do: Bun
 * evaluates a CommonJS dependency while linking, before any ES module body runs, and ssh2 reads
 * the runtime's cipher list the moment it loads (see _chacha20.ts).
 */
import "./_chacha20.ts";
import type * as Ssh2 from "ssh2";

const ssh2: typeof Ssh2 = require("ssh2");
export default ssh2;
