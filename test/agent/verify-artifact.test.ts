import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lookup } from 'node:dns/promises';
import { hostname } from 'node:os';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FileArtifact } from '../../src/core/app-spec.js';
import { forbiddenAddressKind } from '../../src/core/artifact-url.js';
import { fetchVerifiedArtifact as fetchWithPolicy } from '../../src/agent/verify-artifact.js';
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

/** The test's own server is on 127.0.0.1: allowed by naming it, as --allow-artifact-origin does. */
function fetchVerifiedArtifact(artifact: FileArtifact, destination: string) {
  return fetchWithPolicy(artifact, destination, { policy: { allowOrigins: [`${server.url}/`] } });
}

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

  it('never reads file: URLs, nor any scheme but http(s), and makes no file', async () => {
    const source = join(dir, 'source.bin');
    writeFileSync(source, 'local artifact');
    for (const url of [pathToFileURL(source).href, 'file:///etc/shadow', 'data:,local%20artifact', 'ftp://example.com/a', 'gopher://127.0.0.1:70/', 'not a url']) {
      const destination = join(dir, 'schemes', 'copy.bin');
      const err = await failure(fetchVerifiedArtifact({ url, sha256: sha256('local artifact'), size: 14 }, destination));
      expect(err.code, url).toBe('artifact-url-refused');
      expect(existsSync(join(dir, 'schemes')), url).toBe(false);
    }
  });

  it('refuses loopback, link-local and unspecified hosts in every notation before connecting', async () => {
    const port = new URL(server.url).port;
    const hostile = [
      `http://localhost:${port}/good.bin`,
      `https://LOCALHOST./good.bin`,
      `https://evil.localhost/good.bin`,
      `http://2130706433:${port}/good.bin`,
      `http://0x7f.1:${port}/good.bin`,
      `http://0x7f000001:${port}/good.bin`,
      `http://0177.0.0.1:${port}/good.bin`,
      `http://127.1:${port}/good.bin`,
      `http://127.0.0.2:${port}/good.bin`,
      `http://[::1]:${port}/good.bin`,
      `http://[::ffff:127.0.0.1]:${port}/good.bin`,
      `http://[0:0:0:0:0:ffff:7f00:1]:${port}/good.bin`,
      `http://[::127.0.0.1]:${port}/good.bin`,
      `https://[fe80::1]/good.bin`,
      `http://169.254.169.254/latest/meta-data/`,
      `http://2852039166/latest/meta-data/`,
      `http://[::ffff:169.254.169.254]/latest/meta-data/`,
      `http://metadata.google.internal/computeMetadata/v1/`,
      `http://0.0.0.0:${port}/good.bin`,
      `http://0:${port}/good.bin`,
      `http://[::]:${port}/good.bin`,
    ];
    // Look like the allowed origin, are not: a userinfo trick, a longer port, another loopback address.
    const lookalikes = [`http://127.0.0.1:${port}@127.0.0.2:${port}/good.bin`, `http://127.0.0.1:${port}1/good.bin`, `http://127.0.0.2:${port}/good.bin`];
    server.add('/good.bin', 'the real thing');
    const before = server.requested.length;
    const artifact = (url: string) => ({ url, sha256: sha256('the real thing'), size: 14 });
    for (const url of hostile) {
      // No allow-list: the default every agent runs with.
      const err = await failure(fetchWithPolicy(artifact(url), join(dir, 'hostile', 'x.bin'), { policy: {} }));
      expect(err.code, url).toBe('artifact-url-refused');
    }
    for (const url of lookalikes) {
      const err = await failure(fetchVerifiedArtifact(artifact(url), join(dir, 'hostile', 'x.bin')));
      expect(err.code, url).toBe('artifact-url-refused');
    }
    expect(server.requested.length).toBe(before);
    expect(existsSync(join(dir, 'hostile'))).toBe(false);
  });

  it('checks every redirect like the URL from git', async () => {
    server.add('/target.bin', 'redirected');
    server.redirects.set('/to-metadata', 'http://169.254.169.254/latest/meta-data/');
    server.redirects.set('/to-file', 'file:///etc/passwd');
    server.redirects.set('/to-loopback-name', `http://localhost:${new URL(server.url).port}/target.bin`);
    for (const path of ['/to-metadata', '/to-file', '/to-loopback-name']) {
      const err = await failure(fetchVerifiedArtifact({ url: `${server.url}${path}`, sha256: sha256('redirected'), size: 10 }, join(dir, 'redirect', 'r.bin')));
      expect(err.code, path).toBe('artifact-url-refused');
    }
    expect(server.requested).not.toContain('/target.bin');
    // Within the allowed origin a redirect is followed.
    server.redirects.set('/moved', '/target.bin');
    await fetchVerifiedArtifact({ url: `${server.url}/moved`, sha256: sha256('redirected'), size: 10 }, join(dir, 'redirect', 'ok.bin'));
    expect(readFileSync(join(dir, 'redirect', 'ok.bin'), 'utf8')).toBe('redirected');
  });

  it('refuses a host name that resolves to a loopback address (checked after DNS, where the connection goes)', async () => {
    const name = hostname();
    const addresses = await lookup(name, { all: true }).catch(() => []);
    if (!addresses.some((a) => forbiddenAddressKind(a.address) === 'loopback')) {
      console.log(`skipped: this machine's host name ${name} does not resolve to a loopback address`);
      return;
    }
    const port = new URL(server.url).port;
    server.add('/named.bin', 'by name');
    const before = server.requested.length;
    const err = await failure(fetchWithPolicy({ url: `http://${name}:${port}/named.bin`, sha256: sha256('by name'), size: 7 }, join(dir, 'named', 'n.bin')));
    expect(err.code).toBe('artifact-url-refused');
    expect(err.message).toContain('resolves to');
    expect(server.requested.length).toBe(before);
    expect(existsSync(join(dir, 'named', 'n.bin'))).toBe(false);
  });
});
