import { defineCommand } from "citty";

export default defineCommand({
  meta: { name: "config", description: "Create and inspect flash-live configuration." },
  subCommands: {
    init: () => import("./config-init.ts").then((m) => m.default),
  },
});
