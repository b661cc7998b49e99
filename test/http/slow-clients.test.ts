import { connect, type Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegionHttpServer, HTTP_TIMEOUTS } from '../../src/http/http-server.js';
import { makeLocalRepo } from '../support/git-fixtures.js';
import { startRegionProcess, type RegionProcess } from '../support/region-process.js';
import { smallFleet } from '../support/small-fleet.js';

/** Opens a connection and sends `first`, then one more byte of `rest` every `everyMs`; resolves with what the server said and when it hung up. */
function trickle(url: string, first: string, rest: string, everyMs: number): { closed: Promise<{ afterMs: number; answer: string }>; socket: Socket } {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  const started = Date.now();
  let answer = '';
  let timer: NodeJS.Timeout | undefined;
  socket.on('data', (chunk) => (answer += chunk.toString()));
  socket.on('connect', () => {
    socket.write(first);
    let i = 0;
    timer = setInterval(() => {
      if (!socket.writable) return;
      socket.write(rest[i % rest.length]!);
      i++;
    }, everyMs);
  });
  const closed = new Promise<{ afterMs: number; answer: string }>((resolve) => {
    socket.on('close', () => {
      clearInterval(timer);
      resolve({ afterMs: Date.now() - started, answer });
    });
    socket.on('error', () => undefined);
  });
  return { closed, socket };
}

describe('slow clients are cut off (slowloris)', () => {
  let root: string;
  let region: RegionProcess;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cascade-slow-'));
    const repo = await makeLocalRepo(join(root, 'repo'), smallFleet());
    region = await startRegionProcess(['--repo', repo.dir, '--region', 'us-east', '--data', join(root, 'data'), '--interval', '1h', '--enrollment-token', 't']);
  });
  afterAll(async () => {
    await region?.kill();
    await rm(root, { recursive: true, force: true });
  });

  it('a real region closes a connection that sends its headers one byte a second, and serves others meanwhile', async () => {
    const slow = trickle(region.url, 'GET /healthz HTTP/1.1\r\nHost: x\r\n', 'X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n', 1000);
    expect((await fetch(`${region.url}/healthz`)).status).toBe(200);
    const { afterMs, answer } = await slow.closed;
    // Closed by the headers timeout (plus at most one check interval), long before the trickle would end.
    expect(afterMs).toBeGreaterThanOrEqual(HTTP_TIMEOUTS.headersMs - 1000);
    expect(answer).not.toContain('200 OK');
    expect((await fetch(`${region.url}/healthz`)).status).toBe(200);
  }, 60_000);
});

describe('the server kit', () => {
  it('closes a connection whose body trickles past the request timeout; a long answer is not cut by it', async () => {
    const app = createRegionHttpServer({ log: false, timeouts: { headersMs: 500, requestMs: 1500, checkEveryMs: 200 } });
    app.post('/echo', async (request) => request.body);
    app.get('/slow-answer', async () => {
      await new Promise((resolve) => setTimeout(resolve, 2500));
      return { ok: true };
    });
    const url = await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const body = '{"a":"' + 'x'.repeat(200) + '"}';
      const slow = trickle(url, `POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n{`, body.slice(1), 200);
      const { answer } = await slow.closed;
      expect(answer).not.toContain('200 OK');
      // The answer may take longer than the request timeout: it is the request that must be quick.
      expect(await (await fetch(`${url}/slow-answer`)).json()).toEqual({ ok: true });
    } finally {
      await app.close();
    }
  }, 30_000);
});
