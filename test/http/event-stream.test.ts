import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { SseParser, type SseMessage } from '../../src/cli/events/sse-client.js';
import { createRegionHttpServer } from '../../src/http/http-server.js';
import { EventStream } from '../../src/http/event-stream.js';
import { waitFor } from '../support/region-process.js';

interface TestEvent {
  id: number;
  type: string;
  text: string;
}

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function serve(stream: EventStream<TestEvent>, filter?: (e: TestEvent) => boolean): Promise<string> {
  const app = createRegionHttpServer({ log: false });
  app.get('/events', async (request, reply) => stream.serve(request, reply, filter) ?? reply);
  await app.listen({ host: '127.0.0.1', port: 0 });
  cleanups.push(() => app.close());
  cleanups.push(() => stream.close());
  return `http://127.0.0.1:${(app.server.address() as { port: number }).port}/events`;
}

/** Reads a stream into messages (and raw text, for comments) until aborted. */
async function listen(url: string, headers: Record<string, string> = {}) {
  const abort = new AbortController();
  cleanups.push(() => abort.abort());
  const response = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: abort.signal });
  const parser = new SseParser();
  const state = { messages: [] as SseMessage[], raw: '', status: response.status };
  if (response.status === 200) {
    void (async () => {
      const decoder = new TextDecoder();
      try {
        for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
          const text = decoder.decode(chunk, { stream: true });
          state.raw += text;
          state.messages.push(...parser.push(text));
        }
      } catch {
        // aborted
      }
    })();
  }
  return { state, close: () => abort.abort(), body: response.status === 200 ? null : await response.json() };
}

describe('EventStream', () => {
  it('numbers events from its boot clock, keeps only the last `capacity` and says when a Last-Event-ID fell out of them', () => {
    const stream = new EventStream<TestEvent>({ capacity: 3, clock: () => 1_000 });
    cleanups.push(() => stream.close());
    const published = [1, 2, 3, 4, 5].map((n) => stream.publish({ type: 'x', text: String(n) }));
    expect(published.map((e) => e.id)).toEqual([1000, 1001, 1002, 1003, 1004]);
    expect(stream.since(null).events.map((e) => e.text)).toEqual(['3', '4', '5']);
    expect(stream.since(1002)).toEqual({ events: [published[3], published[4]], gap: false });
    expect(stream.since(1001)).toEqual({ events: [published[2], published[3], published[4]], gap: false });
    expect(stream.since(1000).gap).toBe(true); // 1001 was dropped
    expect(stream.since(1004)).toEqual({ events: [], gap: false });
    expect(stream.since(99_999).gap).toBe(true); // from a process with a later clock: cannot be trusted
  });

  it('a restarted server numbers above the one before it, so an old Last-Event-ID gets a gap, never wrong events', () => {
    const first = new EventStream<TestEvent>({ clock: () => 5_000 });
    const last = [1, 2, 3].map(() => first.publish({ type: 'x', text: '' })).at(-1)!;
    first.close();
    const second = new EventStream<TestEvent>({ clock: () => 5_010 });
    cleanups.push(() => second.close());
    expect(second.publish({ type: 'x', text: '' }).id).toBeGreaterThan(last.id);
    expect(second.since(last.id).gap).toBe(true);
  });

  it('streams over HTTP: buffered events first, then live ones, filtered per client; Last-Event-ID resumes; heartbeats are comments', async () => {
    const stream = new EventStream<TestEvent>({ heartbeatMs: 50, clock: () => 1 });
    const url = await serve(stream, (e) => e.type !== 'secret');
    stream.publish({ type: 'a', text: 'before' });
    stream.publish({ type: 'secret', text: 'hidden' });
    const client = await listen(url);
    expect(client.state.status).toBe(200);
    stream.publish({ type: 'b', text: 'line1\nline2 with "quotes" and \u2028' });
    const got = await waitFor(() => (client.state.messages.length >= 2 ? client.state.messages : undefined), 10_000, () => client.state.raw);
    expect(got.map((m) => [m.id, m.event])).toEqual([['1', 'a'], ['3', 'b']]);
    expect(JSON.parse(got[1]!.data)).toEqual({ id: 3, type: 'b', text: 'line1\nline2 with "quotes" and \u2028' });
    await waitFor(() => (client.state.raw.includes(': heartbeat\n\n') ? true : undefined), 10_000, () => client.state.raw);

    const resumed = await listen(url, { 'last-event-id': '1' });
    stream.publish({ type: 'c', text: 'live' });
    const after = await waitFor(() => (resumed.state.messages.length >= 2 ? resumed.state.messages : undefined), 10_000, () => resumed.state.raw);
    expect(after.map((m) => m.id)).toEqual(['3', '4']);

    const json = (await (await fetch(`${url}?format=json&since=3`)).json()) as { events: TestEvent[]; lastId: number };
    expect(json).toEqual({ events: [{ id: 4, type: 'c', text: 'live' }], lastId: 4 });
  });

  it('refuses clients beyond its bound with 503, and takes one again after one leaves', async () => {
    const stream = new EventStream<TestEvent>({ maxClients: 2 });
    const url = await serve(stream);
    const one = await listen(url);
    await listen(url);
    await waitFor(() => (stream.clientCount === 2 ? true : undefined), 10_000, () => `${stream.clientCount} clients`);
    const third = await listen(url);
    expect(third.state.status).toBe(503);
    expect(third.body).toMatchObject({ error: { code: 'events-clients-full' } });
    one.close();
    await waitFor(() => (stream.clientCount === 1 ? true : undefined), 10_000, () => `${stream.clientCount} clients`);
    expect((await listen(url)).state.status).toBe(200);
  });

  it('drops a client that does not read, instead of buffering for it without end', async () => {
    const stream = new EventStream<TestEvent>({ maxBacklogBytes: 64 * 1024 });
    const url = await serve(stream);
    // A client that connects and never reads its socket.
    const { connect } = await import('node:net');
    const target = new URL(url);
    const socket = connect(Number(target.port), target.hostname);
    cleanups.push(() => socket.destroy());
    socket.pause();
    socket.write(`GET ${target.pathname} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`);
    await waitFor(() => (stream.clientCount === 1 ? true : undefined), 10_000, () => `${stream.clientCount} clients`);
    const big = 'x'.repeat(16 * 1024);
    await waitFor(() => {
      for (let i = 0; i < 64; i++) stream.publish({ type: 'x', text: big });
      return stream.clientCount === 0 ? true : undefined;
    }, 30_000, () => `${stream.clientCount} clients`);
  });
});

describe('SseParser', () => {
  const frame = (m: { id: string; event: string; data: string }) => `id: ${m.id}\nevent: ${m.event}\ndata: ${m.data}\n\n`;

  it('reads comments, CRLF and CR line ends, multi-line data, and keeps the last id', () => {
    const parser = new SseParser();
    const out = parser.push(': hello\r\nretry: 3000\r\nid: 7\r\nevent: a\r\ndata: one\r\ndata: two\r\n\r\nid: 8\rdata: x\r\r\n');
    expect(out).toEqual([{ id: '7', event: 'a', data: 'one\ntwo' }, { id: '8', event: 'message', data: 'x' }]);
    expect(parser.lastId).toBe('8');
    expect(parser.retryMs).toBe(3000);
  });

  it('gives the same messages however the bytes are split into chunks', () => {
    const message = fc.record({ id: fc.stringMatching(/^[0-9]{1,6}$/), event: fc.constantFrom('a', 'rollout.halted', 'gap'), data: fc.json().map((j) => j.replace(/[\r\n]/g, ' ')) });
    fc.assert(
      fc.property(fc.array(message, { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 10 }), fc.boolean(), (messages, cuts, crlf) => {
        let text = messages.map(frame).join('');
        if (crlf) text = text.replace(/\n/g, '\r\n');
        const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
        const parser = new SseParser();
        const out: SseMessage[] = [];
        let from = 0;
        for (const point of [...points, text.length]) {
          out.push(...parser.push(text.slice(from, point)));
          from = point;
        }
        expect(out).toEqual(messages.map((m) => ({ id: m.id, event: m.event, data: m.data })));
      }),
    );
  });
});
