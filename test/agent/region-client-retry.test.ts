import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { parseRetryAfter, RegionClient, RegionHttpError } from '../../src/agent/http/region-client.js';

/**
 * A server that closes a connection with 408, as Node's own request and headers timeouts do, `times`
 * times before it answers reports: the region client repeats a request the server did not handle once
 * at once, and a second 408 is an error like any other.
 */
let server: http.Server | undefined;

afterEach(async () => {
  const open = server;
  server = undefined;
  if (!open) return;
  open.closeAllConnections();
  await new Promise((resolve) => open.close(resolve));
});

async function serve408(times: number): Promise<{ url: string; requests: () => number }> {
  let requests = 0;
  server = http.createServer((req, res) => {
    requests++;
    req.resume();
    if (requests <= times) {
      res.writeHead(408, { connection: 'close', 'content-type': 'text/plain' });
      res.end('Request Timeout');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests: () => requests };
}

describe('RegionClient and 408', () => {
  it('repeats a request answered 408 once, at once', async () => {
    const region = await serve408(1);
    const client = new RegionClient({ regionUrl: region.url, deviceId: 'dev-1', token: 'secret' });
    await client.report({ apps: {} });
    expect(region.requests()).toBe(2);
  });

  it('a second 408 in a row is an error (a real failure still counts)', async () => {
    const region = await serve408(2);
    const client = new RegionClient({ regionUrl: region.url, deviceId: 'dev-1', token: 'secret' });
    const err = await client.report({ apps: {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegionHttpError);
    expect((err as RegionHttpError).status).toBe(408);
    expect(region.requests()).toBe(2);
  });
});

describe('parseRetryAfter', () => {
  it('reads seconds and HTTP dates, caps at 10 minutes, and ignores what it cannot read', () => {
    const now = Date.parse('2026-12-01T10:00:00Z');
    expect(parseRetryAfter('3', now)).toBe(3_000);
    expect(parseRetryAfter(['0'], now)).toBe(0);
    expect(parseRetryAfter('Tue, 01 Dec 2026 10:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Tue, 01 Dec 2026 09:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('86400', now)).toBe(600_000);
    expect(parseRetryAfter('soon', now)).toBeNull();
    expect(parseRetryAfter(undefined, now)).toBeNull();
  });
});
