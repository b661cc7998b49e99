import * as nodeFs from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * The node fs for isomorphic-git, except that every file it writes (refs,
 * packs, indexes, config) goes to a scratch file first and is renamed into
 * place: a crash never leaves a half-written ref or pack index behind.
 */
export function atomicWriteFs(scratchDir: string): typeof nodeFs {
  let counter = 0;
  const atomicWriteFile = async (path: string, data: string | Uint8Array, options?: Parameters<typeof writeFile>[2]) => {
    const scratch = join(scratchDir, `${process.pid}-${++counter}`);
    await writeFile(scratch, data, options);
    try {
      await rename(scratch, path);
    } catch (err) {
      await rm(scratch, { force: true });
      throw err;
    }
  };
  const promises = { ...nodeFs.promises, writeFile: atomicWriteFile };
  return { ...nodeFs, promises } as unknown as typeof nodeFs;
}

