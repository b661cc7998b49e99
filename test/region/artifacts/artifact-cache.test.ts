import { createHash, randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ArtifactCache } from '../../../src/region/artifacts/artifact-cache.js';

const log = pino({ level: 'silent' });
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-cache-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');
async function* chunks(data: Buffer): AsyncGenerator<Buffer> {
  for (let i = 0; i < data.length; i += 1000) yield data.subarray(i, i + 1000);
}

describe('ArtifactCache', () => {
  it('keeps a file only when its size and sha256 match what git declares', async () => {
    const cache = await ArtifactCache.open(dir, 1e9, log);
    const data = randomBytes(5000);
    await expect(cache.ingest({ sha256: sha(data), size: 4999 }, chunks(data))).rejects.toMatchObject({ code: 'artifact-too-large' });
    await expect(cache.ingest({ sha256: sha(data), size: 6000 }, chunks(data))).rejects.toMatchObject({ code: 'artifact-size-mismatch' });
    await expect(cache.ingest({ sha256: 'f'.repeat(64), size: 5000 }, chunks(data))).rejects.toMatchObject({ code: 'artifact-checksum-mismatch' });
    expect(cache.count).toBe(0);
    expect(existsSync(cache.path('f'.repeat(64)))).toBe(false);
    await cache.ingest({ sha256: sha(data), size: 5000 }, chunks(data));
    expect(cache.has(sha(data))).toBe(true);
    expect(await cache.verify(sha(data))).toBe(true);
  });

  it('evicts the least recently used beyond its limit, never a pinned one', async () => {
    let now = 0;
    const cache = await ArtifactCache.open(dir, 2500, log, () => now);
    const files = [randomBytes(1000), randomBytes(1000), randomBytes(1000), randomBytes(1000)];
    for (const data of files) {
      now += 10;
      await cache.ingest({ sha256: sha(data), size: data.length }, chunks(data));
    }
    now += 10;
    cache.touch(sha(files[0]!)); // the oldest is used again
    const evicted = await cache.evict(new Set([sha(files[1]!)]));
    // 4000 bytes > 2500: the two least recently used that are not pinned go (files 2 then 3... file 1 is pinned).
    expect(evicted).toEqual([sha(files[2]!), sha(files[3]!)]);
    expect(cache.has(sha(files[0]!)) && cache.has(sha(files[1]!))).toBe(true);
    // Everything pinned: over the limit, but nothing a running rollout needs is dropped.
    const all = new Set(files.map(sha));
    const more = randomBytes(2000);
    await cache.ingest({ sha256: sha(more), size: more.length }, chunks(more));
    all.add(sha(more));
    expect(await cache.evict(all)).toEqual([]);
    expect(cache.totalBytes).toBe(4000);
  });

  it('finds a file changed on disk, removes it, and forgets files that are not named by their sha256 after a restart', async () => {
    const cache = await ArtifactCache.open(dir, 1e9, log);
    const data = randomBytes(3000);
    await cache.ingest({ sha256: sha(data), size: data.length }, chunks(data));
    writeFileSync(join(dir, 'sha256', 'not-a-sha'), 'x');
    writeFileSync(cache.path(sha(data)), randomBytes(3000));
    const reopened = await ArtifactCache.open(dir, 1e9, log);
    expect(existsSync(join(dir, 'sha256', 'not-a-sha'))).toBe(false);
    expect(reopened.has(sha(data))).toBe(true);
    expect(await reopened.verify(sha(data))).toBe(false);
    expect(reopened.has(sha(data))).toBe(false);
    expect(existsSync(reopened.path(sha(data)))).toBe(false);
  });
});
