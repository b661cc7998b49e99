import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { deviceAgentOptions, RegionClient } from '../../src/agent/http/region-client.js';
import { RegionFixture, ENROLLMENT_TOKEN } from './region-fixture.js';

/**
 * A kept-alive socket the server closes just as the device sends its next request on it: the request
 * fails with ECONNRESET ("socket hang up" after a FIN, or a reset) before any byte of an answer. At
 * 15,000 devices this happened to tens of requests per rollout (bench/results/scale.md). Here the race
 * is forced, with real sockets and no timing: the server closes a connection at the moment a second
 * request arrives on it, without answering. The device sends a replayable request again, at once, on
 * a new connection; a report the region applied before the connection died is not applied twice.
 */

type CloseHow = 'end' | 'reset';

let server: http.Server | undefined;
const agents: http.Agent[] = [];

afterEach(async () => {
  for (const agent of agents.splice(0)) agent.destroy();
  const open = server;
  server = undefined;
  if (!open) return;
  open.closeAllConnections();
  await new Promise((resolve) => open.close(resolve));
});

function closeSocket(socket: Socket, how: CloseHow): void {
  if (how === 'reset') socket.resetAndDestroy();
  else socket.destroy();
}

/**
 * Answers `{"ok":true}` (200) to the first request of each connection and closes the connection,
 * unanswered, when a later one arrives on it (or, with `after: 'answer-began'`, once the status line
 * and headers of its answer went out).
 */
async function serveClosingReused(how: CloseHow, after: 'nothing' | 'answer-began' = 'nothing'): Promise<{ url: string; requests: () => number; closed: () => number }> {
  let requests = 0;
  let closed = 0;
  const perSocket = new WeakMap<Socket, number>();
  server = http.createServer((req, res) => {
    requests++;
    const n = (perSocket.get(req.socket) ?? 0) + 1;
    perSocket.set(req.socket, n);
    req.resume();
    if (n > 1) {
      closed++;
      if (after === 'answer-began') {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '11' });
        res.flushHeaders();
        setImmediate(() => closeSocket(req.socket, how));
      } else {
        closeSocket(req.socket, how);
      }
      return;
    }
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests: () => requests, closed: () => closed };
}

function deviceAgent(): http.Agent {
  const agent = new http.Agent(deviceAgentOptions(1));
  agents.push(agent);
  return agent;
}

describe('a kept-alive socket the server closes as the device reuses it', () => {
  for (const how of ['end', 'reset'] as const) {
    it(`a report with a seq and a long poll are sent again on a new connection (server ${how === 'end' ? 'closes' : 'resets'} the socket)`, async () => {
      const region = await serveClosingReused(how);
      const client = new RegionClient({ regionUrl: region.url, deviceId: 'dev-1', token: 'secret', agent: deviceAgent() });
      await client.report({ apps: {}, seq: 1 });
      // Reuses the socket of the first report: the server closes it unanswered.
      await client.report({ apps: {}, seq: 2 });
      expect(region.closed()).toBe(1);
      expect(region.requests()).toBe(3);
      // The same for a long poll (a GET): replayable.
      expect((await client.getDesired(null, 0)).status).toBe(200);
      expect(region.closed()).toBe(2);
      expect(region.requests()).toBe(5);
    });
  }

  it('a report without a seq is not sent twice: the failure stands', async () => {
    const region = await serveClosingReused('end');
    const client = new RegionClient({ regionUrl: region.url, deviceId: 'dev-1', token: 'secret', agent: deviceAgent() });
    await client.report({ apps: {} });
    await expect(client.report({ apps: {} })).rejects.toMatchObject({ code: 'region-unreachable', details: { cause: 'ECONNRESET' } });
    expect(region.requests()).toBe(2);
  });

  it('a connection lost after the answer began is not a stale socket: no replay (and the request settles)', { timeout: 10_000 }, async () => {
    const region = await serveClosingReused('reset', 'answer-began');
    const client = new RegionClient({ regionUrl: region.url, deviceId: 'dev-1', token: 'secret', agent: deviceAgent() });
    await client.report({ apps: {}, seq: 1 });
    await expect(client.report({ apps: {}, seq: 2 })).rejects.toThrow();
    expect(region.requests()).toBe(2);
  });
});

describe('a report the region applied before the connection died', () => {
  it('is sent again and acknowledged, but applied once (its seq)', async () => {
    const region = await RegionFixture.start({ reportOrder: true });
    try {
      const client = new RegionClient({ regionUrl: region.url, deviceId: 'dev-1', agent: deviceAgent() });
      await client.enroll({}, ENROLLMENT_TOKEN);
      // The region handles the report in full, then its connection dies before any byte of the answer.
      let dropped = 0;
      region.app.server.prependListener('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
        if (!req.url?.endsWith('/report') || dropped > 0) return;
        dropped++;
        res.writeHead = (() => {
          req.socket.resetAndDestroy();
          return res;
        }) as typeof res.writeHead;
      });
      await client.report({ apps: { web: { version: '1.0.0', state: 'healthy' } }, seq: 1 });
      expect(dropped).toBe(1);
      expect(region.reportsOf('dev-1')).toBe(1);
      expect(region.store.getDevice('dev-1')?.apps['web']?.version).toBe('1.0.0');
      // The next report, with the next seq, is applied as usual.
      await client.report({ apps: { web: { version: '2.0.0', state: 'healthy' } }, seq: 2 });
      expect(region.reportsOf('dev-1')).toBe(2);
    } finally {
      await region.close();
    }
  });
});
