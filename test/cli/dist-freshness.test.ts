import { mkdtemp, rm, utimes, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
// @ts-expect-error plain JavaScript without types (bin/ runs before any compiler)
import { contentFingerprint, listSourceFiles, statFingerprint } from '../../bin/dist-freshness.js';

/**
 * bin/cascade.js runs dist/ only while it was built from src/ as it is: the stat fingerprint (kept whole,
 * no digest, so a start loads no node:crypto) notices any write, the content one survives copies that
 * lose modification times.
 */
describe('dist freshness fingerprints', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cascade-fresh-'));
    await mkdir(join(dir, 'cli'));
    await writeFile(join(dir, 'cli', 'main.ts'), 'export const a = 1;\n');
    await writeFile(join(dir, 'index.ts'), 'export {};\n');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('tells a write, an added file and a copy apart', async () => {
    const files = () => listSourceFiles(dir) as string[];
    const stat = statFingerprint(files(), dir) as string;
    const content = (await contentFingerprint(files(), dir)) as string;
    expect(stat).toContain('cli/main.ts\0');
    expect(statFingerprint(files(), dir)).toBe(stat);

    // Same size, same modification time, other bytes: only the content fingerprint sees it.
    const at = new Date('2026-01-01T00:00:00Z');
    await utimes(join(dir, 'cli', 'main.ts'), at, at);
    const statAt = statFingerprint(files(), dir) as string;
    await writeFile(join(dir, 'cli', 'main.ts'), 'export const b = 2;\n');
    await utimes(join(dir, 'cli', 'main.ts'), at, at);
    expect(statFingerprint(files(), dir)).toBe(statAt);
    expect(await contentFingerprint(files(), dir)).not.toBe(content);

    // A copy that keeps the bytes but not the times: the stat fingerprint differs, the content one does not.
    await writeFile(join(dir, 'cli', 'main.ts'), 'export const a = 1;\n');
    expect(statFingerprint(files(), dir)).not.toBe(stat);
    expect(await contentFingerprint(files(), dir)).toBe(content);

    // A new file changes both.
    await writeFile(join(dir, 'extra.ts'), '');
    expect(files()).toHaveLength(3);
    expect(statFingerprint(files(), dir)).not.toBe(stat);
    expect(await contentFingerprint(files(), dir)).not.toBe(content);
  });
});
