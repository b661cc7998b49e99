import nodeHttp from 'isomorphic-git/http/node';
import type { HttpClient } from 'isomorphic-git';
import type { CascadeError } from '../core/errors.js';
import { RequestDeadline } from './git-deadline.js';

/**
 * The git smart HTTP wire, as the region's fetches speak it: isomorphic-git's node client with the
 * capabilities it leaves out, an idle timeout and a whole-request deadline, and a count of bytes.
 * Pkt-line and capability details stay in this file; packs are git-packs.ts's.
 */

export interface GitHttp {
  client: HttpClient;
  /** Response body bytes received so far (after any content decoding), for logs. */
  readonly bytesReceived: number;
  /** The deadline error of a request cut off since the last call, if any. */
  takeExpired(): CascadeError | null;
}

/**
 * Capabilities isomorphic-git leaves out of its fetch request, added when the server offers them:
 * - `thin-pack`: changed trees come as deltas against the trees the reconciler already
 *   has, instead of whole (4x native git's bytes for a 10-file rollout in a 2,000-file
 *   repository without it). The pack received is made self-contained by `fattenThinPack`.
 * - `no-progress`: the server's "Counting objects: 3% (1/33)\r..." lines cost more than
 *   the pack itself for a small change, and nobody reads them.
 */
const EXTRA_FETCH_CAPABILITIES = ['thin-pack', 'no-progress'];

/**
 * isomorphic-git's node HTTP client, with an idle timeout (a host that stops
 * answering must not hang the reconciler), a whole-request deadline (nor must one
 * that trickles a byte every few seconds: git-deadline.ts), a count of the bytes
 * received, and EXTRA_FETCH_CAPABILITIES.
 */
export function gitHttp(timeoutMs: number, deadlineMs: number, repoUrl: string): GitHttp {
  const state = { bytesReceived: 0, offered: new Set<string>(), expired: null as CascadeError | null };
  const client: HttpClient = {
    async request(req) {
      const isDiscovery = (req.method ?? 'GET') === 'GET' && req.url.includes('/info/refs?service=git-upload-pack');
      const isUploadPack = req.method === 'POST' && req.url.endsWith('/git-upload-pack');
      if (isDiscovery) state.offered = new Set();
      let body = req.body;
      const extra = EXTRA_FETCH_CAPABILITIES.filter((c) => state.offered.has(c));
      if (isUploadPack && body && extra.length) body = [withCapabilities(await collect(body), extra)] as unknown as typeof body;
      const deadline = new RequestDeadline(deadlineMs, repoUrl, req.url, (err) => (state.expired = err));
      let res: Awaited<ReturnType<HttpClient['request']>>;
      try {
        res = await deadline.race(nodeHttp.request({ ...req, body, signal: deadline.signal, fetchOptions: { ...req.fetchOptions, timeout: timeoutMs } }));
      } catch (err) {
        deadline.done();
        throw deadline.expired ?? err;
      }
      if (!res.body) {
        deadline.done();
        return res;
      }
      const source = deadline.iterate(res.body);
      async function* counted(): AsyncGenerator<Uint8Array> {
        let head = '';
        for await (const chunk of source) {
          state.bytesReceived += chunk.byteLength;
          if (isDiscovery && head.length < 65536 && !state.offered.size) {
            head += Buffer.from(chunk).toString('latin1');
            // v0/v1 advertisement: the capabilities follow a NUL on the first ref line.
            const match = /\0([^\n]*)\n/.exec(head);
            if (match) state.offered = new Set(match[1]!.trim().split(' '));
          }
          yield chunk;
        }
      }
      return { ...res, body: counted() };
    },
  };
  return {
    client,
    get bytesReceived() {
      return state.bytesReceived;
    },
    takeExpired() {
      const expired = state.expired;
      state.expired = null;
      return expired;
    },
  };
}

async function collect(body: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** Adds capabilities to the first `want` line of an upload-pack request (pkt-line framed); anything else is left as is. */
export function withCapabilities(request: Buffer, capabilities: string[]): Buffer {
  if (request.length < 4) return request;
  const length = parseInt(request.subarray(0, 4).toString('latin1'), 16);
  if (!Number.isFinite(length) || length < 4 || length > request.length) return request;
  const line = request.subarray(4, length).toString('latin1');
  if (!line.startsWith('want ')) return request;
  const body = line.endsWith('\n') ? line.slice(0, -1) : line;
  const present = new Set(body.split(' '));
  const missing = capabilities.filter((c) => !present.has(c));
  if (!missing.length) return request;
  const newLine = `${[body, ...missing].join(' ')}${line.endsWith('\n') ? '\n' : ''}`;
  const header = (newLine.length + 4).toString(16).padStart(4, '0');
  return Buffer.concat([Buffer.from(header + newLine, 'latin1'), request.subarray(length)]);
}
