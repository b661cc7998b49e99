/**
 * The region's artifacts on disk, content-addressed: `<data>/artifacts/sha256/<hex>`, and deltas
 * between two of them in `<data>/artifacts/deltas/<to>.<from>.zst`.
 *
 * Promises:
 * - A file is only ever placed under its sha256 after its bytes were hashed and counted while they
 *   were written (in `tmp/`, renamed in place when both match what git declares).
 * - Before a file is served its inode, size and mtime are compared with those seen when it was last
 *   hashed; anything changed means hashing it again, and a file that no longer matches its name is
 *   deleted, never served. (A change that keeps all three is caught by the hash taken while serving.)
 * - Eviction removes the least recently used files beyond the size limit, never a pinned one (an
 *   artifact a running rollout needs), even when that leaves the cache over its limit.
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { CascadeError } from '../../core/errors.js';

const HEX64 = /^[0-9a-f]{64}$/;

export interface CacheEntry {
  sha256: string;
  size: number;
  lastUsed: number;
  /** `ino:size:mtimeMs` when the file was last hashed and matched; null until then. */
  fingerprint: string | null;
}

export interface ExpectedArtifact {
  sha256: string;
  size: number;
}

export class ArtifactCache {
  private readonly entries = new Map<string, CacheEntry>();
  private bytes = 0;
  private readonly verifying = new Map<string, Promise<boolean>>();

  private constructor(
    readonly dir: string,
    readonly limitBytes: number,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {}

  static async open(dir: string, limitBytes: number, log: Logger, now: () => number = Date.now): Promise<ArtifactCache> {
    const cache = new ArtifactCache(dir, limitBytes, log, now);
    await mkdir(join(dir, 'sha256'), { recursive: true, mode: 0o700 });
    await mkdir(join(dir, 'deltas'), { recursive: true, mode: 0o700 });
    // Whatever a crash left half-written goes.
    await rm(join(dir, 'tmp'), { recursive: true, force: true });
    await mkdir(join(dir, 'tmp'), { recursive: true, mode: 0o700 });
    for (const name of await readdir(join(dir, 'sha256'))) {
      const path = join(dir, 'sha256', name);
      if (!HEX64.test(name)) {
        await rm(path, { recursive: true, force: true });
        continue;
      }
      const info = await stat(path);
      if (!info.isFile()) continue;
      cache.entries.set(name, { sha256: name, size: info.size, lastUsed: info.mtimeMs, fingerprint: null });
      cache.bytes += info.size;
    }
    return cache;
  }

  get totalBytes(): number {
    return this.bytes;
  }

  get count(): number {
    return this.entries.size;
  }

  has(sha256: string): boolean {
    return this.entries.has(sha256);
  }

  entry(sha256: string): CacheEntry | undefined {
    return this.entries.get(sha256);
  }

  path(sha256: string): string {
    if (!HEX64.test(sha256)) throw new CascadeError('artifact-sha-invalid', `'${sha256.slice(0, 80)}' is not a sha256`);
    return join(this.dir, 'sha256', sha256);
  }

  deltaPath(to: string, from: string): string {
    if (!HEX64.test(to) || !HEX64.test(from)) throw new CascadeError('artifact-sha-invalid', 'a delta is named by two sha256');
    return join(this.dir, 'deltas', `${to}.${from}.zst`);
  }

  tempPath(): string {
    return join(this.dir, 'tmp', randomBytes(8).toString('hex'));
  }

  touch(sha256: string): void {
    const entry = this.entries.get(sha256);
    if (entry) entry.lastUsed = this.now();
  }

  /**
   * Is the file still what its name says? Cheap when its inode, size and mtime are those last hashed;
   * otherwise hashes it again. A file that does not match is deleted (with its deltas) and forgotten.
   */
  async verify(sha256: string): Promise<boolean> {
    const entry = this.entries.get(sha256);
    if (!entry) return false;
    const info = await stat(this.path(sha256)).catch(() => null);
    if (!info?.isFile()) {
      await this.remove(sha256, 'its file is gone');
      return false;
    }
    const fingerprint = fingerprintOf(info);
    if (entry.fingerprint === fingerprint) return true;
    let pending = this.verifying.get(sha256);
    if (!pending) {
      pending = (async () => {
        const actual = await hashFile(this.path(sha256));
        if (actual !== sha256) {
          await this.remove(sha256, `its content hashes to ${actual}`);
          return false;
        }
        const current = this.entries.get(sha256);
        if (current) current.fingerprint = fingerprint;
        return true;
      })().finally(() => this.verifying.delete(sha256));
      this.verifying.set(sha256, pending);
    }
    return pending;
  }

  /** Forgets a file that failed a check and deletes it, with every delta made from or to it. */
  async remove(sha256: string, why: string): Promise<void> {
    const entry = this.entries.get(sha256);
    if (entry) {
      this.entries.delete(sha256);
      this.bytes -= entry.size;
    }
    this.log.error({ sha256, why }, `cached artifact ${sha256.slice(0, 12)}… removed: ${why}`);
    await rm(this.path(sha256), { force: true });
    await this.removeDeltasOf(sha256);
  }

  /**
   * Writes `source` to the cache under `expected.sha256`, hashing and counting on the way: stops as soon
   * as it is larger than `expected.size`, and keeps the file only when size and sha256 both match.
   */
  async ingest(expected: ExpectedArtifact, source: AsyncIterable<Buffer>, onBytes?: (n: number) => void): Promise<void> {
    const target = this.path(expected.sha256);
    const temp = this.tempPath();
    const file = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    let kept = false;
    try {
      const hash = createHash('sha256');
      let received = 0;
      for await (const chunk of source) {
        received += chunk.length;
        onBytes?.(chunk.length);
        if (received > expected.size) {
          throw new CascadeError('artifact-too-large', `larger than the ${expected.size} bytes git declares; stopped reading`, undefined, { retry: 'final' });
        }
        hash.update(chunk);
        await file.write(chunk);
      }
      if (received !== expected.size) {
        throw new CascadeError('artifact-size-mismatch', `${received} bytes, git declares ${expected.size}`, undefined, { retry: 'final' });
      }
      const actual = hash.digest('hex');
      if (actual !== expected.sha256) {
        throw new CascadeError('artifact-checksum-mismatch', `sha256 is ${actual}, git declares ${expected.sha256}`, undefined, { retry: 'final' });
      }
      await file.sync();
      await file.close();
      await rename(temp, target);
      kept = true;
      const info = await stat(target);
      const old = this.entries.get(expected.sha256);
      if (old) this.bytes -= old.size;
      this.entries.set(expected.sha256, { sha256: expected.sha256, size: info.size, lastUsed: this.now(), fingerprint: fingerprintOf(info) });
      this.bytes += info.size;
    } finally {
      if (!kept) {
        await file.close().catch(() => undefined);
        await rm(temp, { force: true });
      }
    }
  }

  /** Removes least recently used files until the cache fits its limit; never one in `pinned`. */
  async evict(pinned: ReadonlySet<string>): Promise<string[]> {
    if (this.bytes <= this.limitBytes) return [];
    const candidates = [...this.entries.values()].filter((e) => !pinned.has(e.sha256)).sort((a, b) => a.lastUsed - b.lastUsed);
    const evicted: string[] = [];
    for (const entry of candidates) {
      if (this.bytes <= this.limitBytes) break;
      this.entries.delete(entry.sha256);
      this.bytes -= entry.size;
      evicted.push(entry.sha256);
      await rm(this.path(entry.sha256), { force: true });
      await this.removeDeltasOf(entry.sha256);
    }
    if (this.bytes > this.limitBytes) {
      this.log.warn({ bytes: this.bytes, limit: this.limitBytes }, 'the artifact cache is over --artifact-cache-size: what running rollouts need is kept anyway');
    }
    return evicted;
  }

  private async removeDeltasOf(sha256: string): Promise<void> {
    const names = await readdir(join(this.dir, 'deltas')).catch(() => [] as string[]);
    for (const name of names) {
      if (name.includes(sha256)) await rm(join(this.dir, 'deltas', name), { force: true });
    }
  }
}

/** Inode, size and mtime to the millisecond (what `touch -d` or `utimes` can set is no finer). */
function fingerprintOf(info: { ino: number; size: number; mtimeMs: number }): string {
  return `${info.ino}:${info.size}:${Math.trunc(info.mtimeMs)}`;
}

export async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) hash.update(chunk);
  return hash.digest('hex');
}
