import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchVerifiedArtifact } from '../../src/agent/verify-artifact.js';
import { ArtifactServer, sha256 } from './artifact-server.js';

let server: ArtifactServer;
let dir: string;

beforeAll(async () => {
  server = await ArtifactServer.start();
  dir = mkdtempSync(join(tmpdir(), 'cascade-artifact-'));
});
afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

async function failure(promise: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await promise;
  } catch (err) {
    return err as { code: string; message: string };
  }
  throw new Error('expected a failure');
}

describe('fetchVerifiedArtifact', () => {
  it('downloads an artifact whose size and sha256 match', async () => {
    const artifact = server.add('/good.bin', 'the real thing');
    const destination = join(dir, 'good', 'good.bin');
    await fetchVerifiedArtifact(artifact, destination);
    expect(readFileSync(destination, 'utf8')).toBe('the real thing');
    expect(readdirSync(join(dir, 'good'))).toEqual(['good.bin']);
  });

  it('refuses a wrong sha256 and leaves no file', async () => {
    const artifact = { ...server.add('/tampered.bin', 'evil bytes'), sha256: sha256('good bytes') };
    const destination = join(dir, 'tampered', 'tampered.bin');
    const err = await failure(fetchVerifiedArtifact(artifact, destination));
    expect(err.code).toBe('artifact-checksum-mismatch');
    expect(err.message).toContain(sha256('evil bytes'));
    expect(readdirSync(join(dir, 'tampered'))).toEqual([]);
  });

  it('refuses an artifact larger than declared', async () => {
    const artifact = { ...server.add('/big.bin', 'x'.repeat(1000)), size: 10 };
    const err = await failure(fetchVerifiedArtifact(artifact, join(dir, 'big', 'big.bin')));
    expect(err.code).toBe('artifact-too-large');
    expect(readdirSync(join(dir, 'big'))).toEqual([]);
  });

  it('stops reading a stream as soon as it exceeds the declared size', async () => {
    const artifact = { url: `${server.url}/endless`, sha256: 'a'.repeat(64), size: 1024 * 1024 };
    const err = await failure(fetchVerifiedArtifact(artifact, join(dir, 'endless', 'endless.bin')));
    expect(err.code).toBe('artifact-too-large');
    for (let i = 0; i < 100 && !server.endlessClosed; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(server.endlessClosed).toBe(true);
    // The server would send 1 GiB; the client hung up after about 1 MiB plus what was in flight.
    expect(server.endlessBytesSent).toBeLessThan(64 * 1024 * 1024);
    expect(readdirSync(join(dir, 'endless'))).toEqual([]);
  });

  it('refuses an artifact smaller than declared', async () => {
    const artifact = { ...server.add('/short.bin', 'short'), size: 6 };
    // Content-Length says 5 and 5 arrive: the size from git is what counts.
    const err = await failure(fetchVerifiedArtifact(artifact, join(dir, 'short', 'short.bin')));
    expect(err.code).toBe('artifact-size-mismatch');
  });

  it('reports a download that fails', async () => {
    const err = await failure(fetchVerifiedArtifact({ url: `${server.url}/missing.bin`, sha256: 'a'.repeat(64), size: 1 }, join(dir, 'missing', 'm.bin')));
    expect(err.code).toBe('artifact-download-failed');
    expect(err.message).toContain('404');
  });

  it('reads file:// URLs', async () => {
    const source = join(dir, 'source.bin');
    writeFileSync(source, 'local artifact');
    const destination = join(dir, 'local', 'copy.bin');
    await fetchVerifiedArtifact({ url: pathToFileURL(source).href, sha256: sha256('local artifact'), size: 14 }, destination);
    expect(readFileSync(destination, 'utf8')).toBe('local artifact');
    const err = await failure(fetchVerifiedArtifact({ url: pathToFileURL(join(dir, 'nope')).href, sha256: 'a'.repeat(64), size: 1 }, join(dir, 'local', 'nope')));
    expect(err.code).toBe('artifact-download-failed');
    expect(existsSync(join(dir, 'local', 'nope'))).toBe(false);
  });
});
