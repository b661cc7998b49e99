import { CascadeError } from '../../core/errors.js';
import { EVENTS_PATH, type CascadeEvent } from '../../protocol/events.js';
import { SseParser } from './sse-client.js';

export interface EventsSource {
  /** Region or hub base URL. */
  url: string;
  /** Bearer token (a region's operator token, the hub's read token), when needed. */
  token?: string;
  /** What the flag was called, for error messages. */
  flag: string;
}

function headers(source: EventsSource, extra: Record<string, string>): Record<string, string> {
  return source.token ? { ...extra, authorization: `Bearer ${source.token}` } : extra;
}

async function failure(response: Response, url: string): Promise<CascadeError> {
  const body = (await response.json().catch(() => ({}))) as { error?: { code?: string; message?: string } };
  return new CascadeError(body.error?.code ?? 'events-request-failed', `GET ${url}: ${body.error?.message ?? `HTTP ${response.status}`}`);
}

/** The events the server still buffers, oldest first, then the call returns. */
export async function recentEvents(source: EventsSource): Promise<CascadeEvent[]> {
  const url = new URL(`${EVENTS_PATH}?format=json`, source.url).toString();
  let response: Response;
  try {
    response = await fetch(url, { headers: headers(source, { accept: 'application/json' }), signal: AbortSignal.timeout(30_000) });
  } catch (err) {
    throw new CascadeError('events-unreachable', `cannot reach ${url}: ${String((err as Error).cause ?? (err as Error).message)}; check ${source.flag}`, {}, { retry: 'temporary' });
  }
  if (!response.ok) throw await failure(response, url);
  const body = (await response.json()) as { events: CascadeEvent[] };
  return body.events;
}

export interface FollowOptions {
  /** Called for each event, in order. */
  onEvent: (event: CascadeEvent) => void;
  /** Called when the server says events were missed (its buffer moved on, or it restarted). */
  onGap?: () => void;
  /** Called when the stream dropped and will be reopened. */
  onReconnect?: (delayMs: number, reason: string) => void;
  signal?: AbortSignal;
}

/**
 * Follows the event stream until `signal` aborts: reconnects after a drop with Last-Event-ID, so
 * nothing is missed while the server still buffers it, backing off from 1 s to 30 s while the
 * server is away. A 4xx answer (wrong token, wrong URL) ends it with an error.
 */
export async function followEvents(source: EventsSource, options: FollowOptions): Promise<void> {
  const url = new URL(EVENTS_PATH, source.url).toString();
  let lastId: string | null = null;
  let failures = 0;
  while (!options.signal?.aborted) {
    const parser = new SseParser();
    let reason = 'the stream ended';
    try {
      const response = await fetch(url, {
        headers: headers(source, { accept: 'text/event-stream', ...(lastId ? { 'last-event-id': lastId } : {}) }),
        signal: options.signal,
      });
      if (response.status >= 400 && response.status < 500) throw await failure(response, url);
      if (!response.ok || !response.body) {
        reason = `HTTP ${response.status}`;
      } else {
        failures = 0;
        const decoder = new TextDecoder();
        for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
          for (const message of parser.push(decoder.decode(chunk, { stream: true }))) {
            if (message.event === 'gap') options.onGap?.();
            else if (message.data) options.onEvent(JSON.parse(message.data) as CascadeEvent);
          }
          lastId = parser.lastId ?? lastId;
        }
      }
    } catch (err) {
      if (options.signal?.aborted) return;
      if (err instanceof CascadeError) throw err;
      reason = String((err as Error).cause ?? (err as Error).message);
    }
    lastId = parser.lastId ?? lastId;
    if (options.signal?.aborted) return;
    const delay = Math.min(1000 * 2 ** Math.min(failures++, 5), 30_000);
    options.onReconnect?.(delay, reason);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, delay);
      options.signal?.addEventListener('abort', () => {
        clearTimeout(timer);
        resolve();
      }, { once: true });
    });
  }
}

/** One line for a person: `12:03:04 eu-west revision.applied  revision 1a2b3c4d applied: Bump web`. */
export function formatEventLine(event: CascadeEvent): string {
  const time = new Date(event.at).toISOString().slice(11, 19);
  return `${time} ${event.region} ${event.type.padEnd(20)} ${oneLine(event.message)}${event.author && event.type.startsWith('revision.') ? ` (${oneLine(event.author)})` : ''}`;
}

/** Control characters from a commit message or a device never reach the terminal. */
function oneLine(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ');
}
