/**
 * Binary deltas between two cached artifacts, made with the zstd CLI's `--patch-from` (Debian package
 * `zstd`). Why zstd: it is maintained by Meta and shipped by every distribution, `--patch-from` was
 * built for exactly this (the old file is the dictionary), `--long` windows reach 2 GiB so large
 * firmware images still match far back, and both sides are fast (a 20 MB file with a few changed
 * bytes: a 2 KB delta in about 0.3 s). bsdiff needs memory of about 17x the file and is slow;
 * xdelta3 is barely maintained. The same tool applies the delta on the device, and a device without
 * it simply downloads the whole file.
 */
import { execFile } from 'node:child_process';
import { rename, rm, stat } from 'node:fs/promises';

export interface DeltaTool {
  /** Is the zstd CLI there? Asked once. */
  available(): Promise<boolean>;
  /** Writes the delta from `base` to `target` at `out`; returns its size. */
  make(base: string, target: string, out: string, temp: string): Promise<number>;
}

export function zstdDeltaTool(command = 'zstd'): DeltaTool {
  let available: Promise<boolean> | null = null;
  return {
    available() {
      available ??= new Promise((resolve) => execFile(command, ['--version'], (err) => resolve(!err)));
      return available;
    },
    async make(base, target, out, temp) {
      try {
        await new Promise<void>((resolve, reject) => {
          // No shell: each path is one argument; `--` ends the options before the input file.
          execFile(command, ['-q', '-f', '-3', '--long=31', `--patch-from=${base}`, '-o', temp, '--', target], { maxBuffer: 64 * 1024 }, (err, _stdout, stderr) =>
            err ? reject(new Error(`zstd --patch-from failed: ${String(stderr).trim().slice(0, 300) || err.message}`)) : resolve(),
          );
        });
        await rename(temp, out);
      } finally {
        await rm(temp, { force: true });
      }
      return (await stat(out)).size;
    },
  };
}
