import { definePlugin } from "./define-plugin.ts";

/**
 * The services the seed (flash-live-remote) stops before writing: HaLOS runs its apps in
 * containers that keep databases and logs open on the root filesystem.
 */
export const HALOS_SERVICES = ["container-*", "marine-*", "halos-*", "cockpit", "docker"] as const;

/** Built in and on by default; `plugins: ["!halos"]` (or `+!halos` to keep other plugins) turns it off. */
export default definePlugin({
  name: "halos",
  hooks: {
    "services:resolve"(_ctx, services) {
      for (const s of HALOS_SERVICES) if (!services.includes(s)) services.push(s);
    },
  },
});
