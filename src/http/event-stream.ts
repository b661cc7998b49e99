import type { FastifyReply, FastifyRequest } from 'fastify';
import { HttpError } from './http-server.js';

/**
 * Server-Sent Events from one bounded buffer, for the region and the hub alike.
 *
 * Promises: every event gets an id one above the last; ids start at the server's clock (ms) at boot,
 * so a restarted server's ids stay above those of the process before it and a client's
 * `Last-Event-ID` from then is answered with a `gap` event, never with the wrong events. A client
 * that reconnects with `Last-Event-ID` gets what it missed while that is still buffered, otherwise a
 * `gap` event first (reload the whole state) and then what is buffered. A comment line every
 * `heartbeatMs` keeps proxies from closing a quiet stream. The number of clients is bounded (503
 * beyond it); a client that reads too slowly is dropped rather than buffered without end.
 * Never: blocks a publisher, or sends an event a client's filter refuses.
 */

export interface StreamEvent {
  id: number;
  type: string;
}

export interface EventStreamOptions {
  /** Events kept for replay (default 1000). */
  capacity?: number;
  /** Clients at once (default 100). */
  maxClients?: number;
  /** Comment line interval (default 15 s). */
  heartbeatMs?: number;
  /** Bytes a client may fall behind before it is dropped (default 1 MiB). */
  maxBacklogBytes?: number;
  clock?: () => number;
}

interface Client {
  write(chunk: string): void;
  filter: (event: StreamEvent) => boolean;
  end(): void;
}

export const DEFAULT_HEARTBEAT_MS = 15_000;

export class EventStream<E extends StreamEvent> {
  private readonly buffer: E[] = [];
  private nextId: number;
  private readonly clients = new Set<Client>();
  private readonly capacity: number;
  private readonly maxClients: number;
  private readonly maxBacklogBytes: number;
  private readonly heartbeat: NodeJS.Timeout;
  private readonly listeners = new Set<(event: E) => void>();

  constructor(options: EventStreamOptions = {}) {
    this.capacity = options.capacity ?? 1000;
    this.maxClients = options.maxClients ?? 100;
    this.maxBacklogBytes = options.maxBacklogBytes ?? 1024 * 1024;
    this.nextId = Math.max(1, Math.floor((options.clock ?? Date.now)()));
    this.heartbeat = setInterval(() => {
      for (const client of this.clients) client.write(': heartbeat\n\n');
    }, options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  /** Gives the event the next id, buffers it and sends it to every client whose filter takes it. */
  publish(event: Omit<E, 'id'>): E {
    const full = { id: this.nextId++, ...event } as E;
    this.buffer.push(full);
    if (this.buffer.length > this.capacity) this.buffer.splice(0, this.buffer.length - this.capacity);
    const frame = formatEvent(full);
    for (const client of this.clients) if (client.filter(full)) client.write(frame);
    for (const listener of this.listeners) listener(full);
    return full;
  }

  /** In-process subscribers (tests, the hub relay); returns the unsubscribe. */
  subscribe(listener: (event: E) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Buffered events after `lastId` (all when null), and whether some after it were already dropped. */
  since(lastId: number | null): { events: E[]; gap: boolean } {
    if (lastId === null) return { events: [...this.buffer], gap: false };
    const first = this.buffer[0]?.id ?? this.nextId;
    const gap = lastId < first - 1 || lastId >= this.nextId;
    return { events: gap ? [...this.buffer] : this.buffer.filter((e) => e.id > lastId), gap };
  }

  get clientCount(): number {
    return this.clients.size;
  }

  /**
   * Answers one request: `?format=json` (or `Accept: application/json` without event-stream) with
   * the buffer once, as `{ events, lastId }`; otherwise holds an event stream open.
   */
  serve(request: FastifyRequest, reply: FastifyReply, filter: (event: E) => boolean = () => true): { events: E[]; lastId: number | null } | undefined {
    const query = request.query as Record<string, unknown>;
    const accept = String(request.headers.accept ?? '');
    const lastId = parseLastId(request.headers['last-event-id'] ?? query['since']);
    if (query['format'] === 'json' || (accept.includes('application/json') && !accept.includes('text/event-stream'))) {
      const events = this.since(lastId).events.filter(filter);
      void reply.header('cache-control', 'no-store');
      return { events, lastId: this.nextId - 1 };
    }
    if (this.clients.size >= this.maxClients) {
      throw new HttpError(503, 'events-clients-full', `this server already streams events to ${this.maxClients} clients; try again later or read ?format=json`);
    }
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
      'x-content-type-options': 'nosniff',
    });
    const client: Client = {
      filter: filter as (event: StreamEvent) => boolean,
      write: (chunk) => {
        if (res.destroyed) return;
        res.write(chunk);
        if (res.writableLength > this.maxBacklogBytes) client.end();
      },
      end: () => {
        this.clients.delete(client);
        if (!res.destroyed) res.end();
      },
    };
    const { events, gap } = this.since(lastId);
    let head = 'retry: 3000\n\n';
    if (gap) head += `event: gap\ndata: ${JSON.stringify({ lastId, oldest: this.buffer[0]?.id ?? null })}\n\n`;
    for (const event of events) if (client.filter(event)) head += formatEvent(event);
    res.write(head);
    this.clients.add(client);
    request.raw.socket.once('close', () => this.clients.delete(client));
    res.once('close', () => this.clients.delete(client));
    return undefined;
  }

  /** Ends every stream and stops the heartbeat. */
  close(): void {
    clearInterval(this.heartbeat);
    for (const client of [...this.clients]) client.end();
    this.listeners.clear();
  }
}

export function formatEvent(event: StreamEvent): string {
  // JSON.stringify never emits a raw newline, so one data line carries the whole event.
  return `id: ${event.id}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
}

function parseLastId(value: unknown): number | null {
  const text = Array.isArray(value) ? value[0] : value;
  if (typeof text !== 'string' || !/^\d{1,16}$/.test(text.trim())) return null;
  return Number(text.trim());
}
