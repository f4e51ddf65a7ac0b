import { existsSync, renameSync, statSync } from "node:fs";
import { log, run, since, withLock } from "./_run.ts";

/**
 * The compressed forms of a board image (.img.xz, .img.gz, .img.zst), made on first use next to the
 * raw image in its cache directory and kept there. Every image has all three on demand; a build makes
 * none of them, because most are never flashed (board A's, or B-gpt's .xz): on a fresh machine that
 * was 1-1.5 min per 1 GiB image, on the way to the first test or the demo.
 * Made under a lock into a temporary file and renamed: a reader sees the whole file or none, and two
 * test processes asking at once make it once. (Not part of any recipe hash: the bytes of a form
 * follow from the raw image and the command below.)
 */
export type Packed = "xz" | "gz" | "zst";
export const PACKED: readonly Packed[] = ["xz", "gz", "zst"];

/** The image's form, from its raw file, to stdout. xz -1: ~5x faster than -6 for nearly the same size (FIELD-NOTES §2). */
const COMMAND: Record<Packed, string> = {
  xz: 'xz -T0 -1 -c "$1"',
  gz: 'gzip -1 -c "$1"',
  zst: 'zstd -q -T0 -3 -c "$1"',
};

/** What ensureImage hands out: the raw image's facts, plus a path and a size for each form asked for. */
export type WithForms<T extends { raw: string; sizes: { raw: number } }, F extends Packed> = Omit<T, "sizes"> & Record<F, string> & {
  sizes: { raw: number } & Record<F, number>;
};

export async function withForms<T extends { raw: string; sizes: { raw: number } }, F extends Packed>(img: T, forms: readonly F[]): Promise<WithForms<T, F>> {
  const out: Record<string, unknown> = { ...img, sizes: { ...img.sizes } };
  await Promise.all(
    [...new Set(forms)].map(async (f) => {
      const path = await ensureForm(img.raw, f);
      out[f] = path;
      (out.sizes as Record<string, number>)[f] = statSync(path).size;
    }),
  );
  return out as WithForms<T, F>;
}

/** The path of `raw`.<form>, made if it is not there yet. */
export async function ensureForm(raw: string, form: Packed): Promise<string> {
  const path = `${raw}.${form}`;
  if (existsSync(path)) return path;
  return withLock(`${path}.lock`, async () => {
    if (existsSync(path)) return path;
    const tmp = `${path}.tmp-${process.pid}`;
    const t0 = performance.now();
    // Leftovers of a process that died making it (nobody else makes it while this lock is held).
    await run(["sh", "-c", 'rm -f "$1".tmp-*', "-", path]);
    try {
      await run(["sh", "-c", `${COMMAND[form]} > "$2"`, "-", raw, tmp]);
    } catch (e) {
      await run(["rm", "-f", tmp], { check: false });
      throw e;
    }
    renameSync(tmp, path);
    log(`made ${path.split("/").pop()} in ${since(t0)} s`);
    return path;
  });
}
