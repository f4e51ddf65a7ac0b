/**
 * Looking a package up in a Debian suite the way apt trusts it: InRelease signed by the Debian
 * archive keys (checked with gpgv) -> Packages.xz whose sha256 InRelease lists -> the package's
 * stanza with its .deb sha256. Only used to (re)pin busybox-static, never at flash time.
 */
import { existsSync } from "node:fs";
import { XzReadableStream } from "xz-decompress";
import type { BusyboxPin } from "./busybox-pins.ts";

export const DEFAULT_MIRROR = "https://deb.debian.org/debian";
export const DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg";

export function debianMirror(env: Record<string, string | undefined> = process.env): string {
  return (env.FLASH_LIVE_DEBIAN_MIRROR || DEFAULT_MIRROR).replace(/\/+$/, "");
}

/** FLASH_LIVE_DEBIAN_KEYRING: for hosts that keep debian-archive-keyring elsewhere (and for tests). */
export function debianKeyring(env: Record<string, string | undefined> = process.env): string {
  return env.FLASH_LIVE_DEBIAN_KEYRING || DEFAULT_KEYRING;
}

export interface IndexedPin extends BusyboxPin {
  /** InRelease's signature was checked with gpgv against the Debian archive keyring. */
  verified: boolean;
}

export class HttpError extends Error {
  constructor(
    public readonly url: string,
    public readonly status: number,
  ) {
    super(`HTTP ${status} for ${url}`);
  }
}

export async function download(url: string): Promise<Uint8Array> {
  const response = await fetch(url);
  if (!response.ok) throw new HttpError(url, response.status);
  return new Uint8Array(await response.arrayBuffer());
}

export function sha256Hex(bytes: Uint8Array): string {
  return new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
}

/**
 * The suite's Release text. With `requireSignature`, fails unless gpgv and the keyring are present;
 * otherwise an unverifiable InRelease is returned with verified=false (used only to print a hint).
 */
export async function fetchRelease(
  mirror: string,
  suite: string,
  requireSignature: boolean,
): Promise<{ text: string; verified: boolean }> {
  const inRelease = await download(`${mirror}/dists/${suite}/InRelease`);
  const gpgv = Bun.which("gpgv");
  const keyring = debianKeyring();
  if (!gpgv || !existsSync(keyring)) {
    if (requireSignature) {
      throw new Error(
        `cannot verify ${suite}/InRelease: needs gpgv and ${keyring} (apt-get install gpgv debian-archive-keyring)`,
      );
    }
    return { text: clearsignedBody(new TextDecoder().decode(inRelease)), verified: false };
  }
  // --output - prints only the signed text: what we parse is exactly what the signature covers.
  const proc = Bun.spawnSync([gpgv, "--keyring", keyring, "--output", "-", "-"], { stdin: inRelease });
  if (proc.exitCode !== 0) {
    throw new Error(`gpgv rejected ${mirror}/dists/${suite}/InRelease:\n${proc.stderr.toString().trim()}`);
  }
  return { text: proc.stdout.toString(), verified: true };
}

/** The stanza of `pkg` in `suite`'s main/binary-<arch> index, checked against the Release file's sha256. */
export async function lookupPackage(
  mirror: string,
  suite: string,
  release: { text: string; verified: boolean },
  arch: string,
  pkg: string,
): Promise<IndexedPin | undefined> {
  const indexPath = `main/binary-${arch}/Packages.xz`;
  const listed = releaseSha256(release.text).get(indexPath);
  if (!listed) throw new Error(`${suite}/Release does not list ${indexPath}`);
  // by-hash: the file cannot change under us between reading InRelease and fetching the index.
  const byHash = /^Acquire-By-Hash:\s*yes$/m.test(release.text);
  const url = byHash
    ? `${mirror}/dists/${suite}/main/binary-${arch}/by-hash/SHA256/${listed.sha256}`
    : `${mirror}/dists/${suite}/${indexPath}`;
  const xz = await download(url);
  if (xz.length !== listed.size || sha256Hex(xz) !== listed.sha256) {
    throw new Error(`${url} does not match the sha256 in ${suite}/InRelease`);
  }
  const text = await new Response(new XzReadableStream(new Blob([xz]).stream())).text();
  const stanza = findStanza(text, pkg);
  if (!stanza) return undefined;
  return {
    version: stanza.get("Version")!,
    filename: stanza.get("Filename")!,
    size: Number(stanza.get("Size")),
    sha256: stanza.get("SHA256")!,
    verified: release.verified,
  };
}

/** `path -> {sha256, size}` from a Release file's SHA256 section. */
export function releaseSha256(text: string): Map<string, { sha256: string; size: number }> {
  const files = new Map<string, { sha256: string; size: number }>();
  let inSection = false;
  for (const line of text.split("\n")) {
    if (/^\S/.test(line)) {
      inSection = line.startsWith("SHA256:");
      continue;
    }
    if (!inSection) continue;
    const [sha256, size, path] = line.trim().split(/\s+/);
    if (sha256 && size && path) files.set(path, { sha256, size: Number(size) });
  }
  return files;
}

/** The fields of the first stanza for `pkg` in a Packages file (continuation lines dropped). */
export function findStanza(packages: string, pkg: string): Map<string, string> | undefined {
  const header = `Package: ${pkg}\n`;
  const found = packages.startsWith(header) ? -1 : packages.indexOf(`\n${header}`);
  if (found === -1 && !packages.startsWith(header)) return undefined;
  const start = found + 1;
  const end = packages.indexOf("\n\n", start);
  const fields = new Map<string, string>();
  for (const line of packages.slice(start, end === -1 ? undefined : end).split("\n")) {
    const match = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(line);
    if (match) fields.set(match[1]!, match[2]!);
  }
  return fields;
}

// --- internal ---

function clearsignedBody(text: string): string {
  const start = text.indexOf("\n\n", text.indexOf("-----BEGIN PGP SIGNED MESSAGE-----"));
  const end = text.indexOf("\n-----BEGIN PGP SIGNATURE-----");
  return text.slice(start + 2, end).replace(/^- /gm, "");
}
