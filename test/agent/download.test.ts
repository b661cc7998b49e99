import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { downloadFromRelay } from '../../src/agent/download.js';

/** A hostile or broken "region": answers each artifact request with what `answer` says. */
let server: http.Server;
let url: string;
let dir: string;
let answer: (request: http.IncomingMessage, response: http.ServerResponse) => void;
const seen: Array<{ path: string; range?: string; authorization?: string }> = [];

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cascade-download-'));
  seen.length = 0;
  server = http.createServer((request, response) => {
    seen.push({ path: request.url ?? '', range: request.headers.range, authorization: request.headers.authorization });
    answer(request, response);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterEach(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

const data = randomBytes(100_000);
const artifact = { url: 'https://origin.example/a.bin', sha256: createHash('sha256').update(data).digest('hex'), size: data.length };
const source = () => ({ regionUrl: url, token: () => 'device-token' });

describe('downloadFromRelay against a hostile region', () => {
  it('resumes from a partial file left by an earlier run, asking only for the rest', async () => {
    const destination = join(dir, 'a.bin');
    writeFileSync(`${destination}.partial`, data.subarray(0, 40_000));
    answer = (request, response) => {
      const from = Number(/bytes=(\d+)-/.exec(request.headers.range ?? '')?.[1] ?? 0);
      response.writeHead(from ? 206 : 200, from ? { 'content-range': `bytes ${from}-${data.length - 1}/${data.length}` } : {}).end(data.subarray(from));
    };
    const result = await downloadFromRelay(artifact, {}, destination, { source: source() });
    expect(result).toMatchObject({ via: 'full', resumed: 1, bytesReceived: 60_000 });
    expect(seen[0]).toMatchObject({ path: `/api/v1/artifacts/${artifact.sha256}`, range: 'bytes=40000-', authorization: 'Bearer device-token' });
    expect(readFileSync(destination).equals(data)).toBe(true);
  });

  it('starts over when a resumed file turns out wrong, and installs nothing that does not match git', async () => {
    const destination = join(dir, 'a.bin');
    writeFileSync(`${destination}.partial`, randomBytes(40_000)); // not the start of this artifact
    answer = (request, response) => {
      const from = Number(/bytes=(\d+)-/.exec(request.headers.range ?? '')?.[1] ?? 0);
      response.writeHead(from ? 206 : 200, from ? { 'content-range': `bytes ${from}-${data.length - 1}/${data.length}` } : {}).end(data.subarray(from));
    };
    await downloadFromRelay(artifact, {}, destination, { source: source(), retryDelayMs: 1 });
    expect(seen.map((s) => s.range)).toEqual(['bytes=40000-', undefined]);
    expect(readFileSync(destination).equals(data)).toBe(true);

    answer = (_request, response) => response.end(randomBytes(data.length));
    const other = join(dir, 'b.bin');
    await expect(downloadFromRelay(artifact, {}, other, { source: source(), retryDelayMs: 1 })).rejects.toMatchObject({ code: 'artifact-checksum-mismatch' });
    expect(existsSync(other)).toBe(false);
    expect(existsSync(`${other}.partial`)).toBe(false);
  });

  it('stops reading a body larger than git declares', async () => {
    answer = (_request, response) => response.end(Buffer.concat([data, randomBytes(50_000)]));
    const destination = join(dir, 'a.bin');
    await expect(downloadFromRelay(artifact, {}, destination, { source: source(), retryDelayMs: 1 })).rejects.toMatchObject({ code: 'artifact-too-large' });
    expect(existsSync(destination)).toBe(false);
  });

  it('refuses a Content-Range that does not continue the partial file', async () => {
    const destination = join(dir, 'a.bin');
    writeFileSync(`${destination}.partial`, data.subarray(0, 40_000));
    let calls = 0;
    answer = (request, response) => {
      calls++;
      if (calls === 1) return void response.writeHead(206, { 'content-range': `bytes 0-99999/100000` }).end(data.subarray(40_000));
      response.end(data);
    };
    await downloadFromRelay(artifact, {}, destination, { source: source(), retryDelayMs: 1 });
    expect(readFileSync(destination).equals(data)).toBe(true);
  });

  it('does not write through a symlink planted at the partial file', async () => {
    const destination = join(dir, 'a.bin');
    const outside = join(dir, 'outside');
    writeFileSync(outside, 'keep me');
    symlinkSync(outside, `${destination}.partial`);
    answer = (_request, response) => response.end(data);
    await expect(downloadFromRelay(artifact, {}, destination, { source: source(), retryDelayMs: 1 })).rejects.toMatchObject({ code: 'state-path-refused' });
    expect(readFileSync(outside, 'utf8')).toBe('keep me');
  });

  it('ignores hostile delta offers and downloads the whole file', async () => {
    const current = join(dir, 'current.bin');
    writeFileSync(current, data);
    answer = (request, response) => {
      if (request.url?.includes('/delta/')) return void response.end(randomBytes(10)); // garbage delta
      response.end(data);
    };
    const offers = [
      { from: '../../etc/passwd', size: 10, format: 'zstd-patch' as const },
      { from: artifact.sha256, size: -1, format: 'zstd-patch' as const },
      { from: artifact.sha256, size: 10, format: 'bsdiff' as unknown as 'zstd-patch' },
      { from: 'f'.repeat(64), size: 10, format: 'zstd-patch' as const }, // not the current file
      { from: artifact.sha256, size: 10, format: 'zstd-patch' as const }, // garbage that zstd refuses
    ];
    for (const [i, delta] of offers.entries()) {
      const destination = join(dir, `d${i}.bin`);
      const result = await downloadFromRelay(artifact, { delta }, destination, { source: source(), current });
      expect(result.via).toBe('full');
      expect(readFileSync(destination).equals(data)).toBe(true);
    }
    // Only the last offer was worth asking the region for; none of them reached the file system by path.
    expect(seen.filter((s) => s.path.includes('/delta/')).map((s) => s.path)).toEqual([`/api/v1/artifacts/${artifact.sha256}/delta/${artifact.sha256}`]);
  });
});
