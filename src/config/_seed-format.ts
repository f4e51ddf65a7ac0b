import { CONF_KEYS, type CustomizationConfig } from "./schema.ts";

/**
 * Writes config in the seed's key=value format, which has no quoting: the value is everything after
 * the first `=`, spaces kept. So any value round-trips except one with a line break, which is
 * refused here (the wizard validates before it gets this far).
 */
export function formatSeedConf(config: CustomizationConfig, header: string[] = []): string {
  const lines = header.map((h) => (h ? `# ${h}` : "#"));
  for (const [confKey, key] of Object.entries(CONF_KEYS)) {
    const value = config[key];
    if (value === undefined) continue;
    for (const item of Array.isArray(value) ? value : [value]) {
      const text = String(item);
      if (/[\r\n]/.test(text)) throw new Error(`formatSeedConf: ${confKey} contains a line break`);
      lines.push(`${confKey}=${text}`);
    }
  }
  return `${lines.join("\n")}\n`;
}
