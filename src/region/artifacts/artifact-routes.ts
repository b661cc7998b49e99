/**
 * `GET /api/v1/artifacts/<sha256>` and `GET /api/v1/artifacts/<sha256>/delta/<from>`: the region's
 * copies, for devices with a valid token, only of artifacts the device was handed or runs.
 *
 * HTTP: a single `Range: bytes=a-b | a- | -n` is answered 206 with Content-Range (416 when it
 * starts past the end); `If-Range` with another ETag, or several ranges, get the whole file (200).
 * The ETag is the quoted sha256. Bytes pass the relay's token bucket; downloads beyond
 * `--relay-concurrency` wait for a slot. A whole file is hashed on its way out: one that does not
 * match its name was changed on disk, and is removed from the cache.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { DeviceId } from '../../core/types.js';
import { HttpError } from '../../http/http-server.js';
import { errorCodes } from '../../protocol/types.js';
import type { StateStore } from '../../reconciler/state-store.js';
import { hashDeviceToken } from '../device-tokens.js';
import type { ArtifactRelay } from './artifact-relay.js';

const CHUNK = 64 * 1024;
const HEX64 = /^[0-9a-f]{64}$/;

export function registerArtifactRoutes(app: FastifyInstance, deps: { relay: ArtifactRelay; store: StateStore }): void {
  const { relay, store } = deps;

  const deviceOf = (request: FastifyRequest, reply: FastifyReply): DeviceId => {
    const header = request.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (!match) {
      void reply.header('www-authenticate', 'Bearer');
      throw new HttpError(401, errorCodes.deviceTokenMissing, 'send the device token from enrolment as Authorization: Bearer <token>');
    }
    const device = store.deviceIdForTokenHash(hashDeviceToken(match[1]!));
    if (device === null) {
      void reply.header('www-authenticate', 'Bearer error="invalid_token"');
      throw new HttpError(401, errorCodes.deviceTokenInvalid, 'the device token is not valid (unknown, replaced by a newer enrolment, or revoked): enrol the device again');
    }
    return device;
  };

  const checkSha = (value: string, what: string): string => {
    if (!HEX64.test(value)) throw new HttpError(400, errorCodes.invalidQuery, `${what} must be 64 lowercase hex digits`);
    return value;
  };

  app.get<{ Params: { sha: string } }>('/api/v1/artifacts/:sha', async (request, reply) => {
    const sha = checkSha(request.params.sha, 'the artifact sha256');
    const device = deviceOf(request, reply);
    // Not "forbidden": a device learns nothing about artifacts it was never handed.
    if (!relay.mayRead(device, sha)) throw new HttpError(404, errorCodes.artifactNotRelayed, `no artifact ${sha} for this device`);
    const found = await relay.ensure(sha);
    if (found === null) {
      void reply.header('retry-after', '30');
      throw new HttpError(503, errorCodes.artifactUnavailable, `the region cannot serve artifact ${sha} now (its origin failed or it did not verify); try again later`);
    }
    return serveFile(request, reply, relay.cache.path(sha), sha, 'full');
  });

  app.get<{ Params: { sha: string; from: string } }>('/api/v1/artifacts/:sha/delta/:from', async (request, reply) => {
    const sha = checkSha(request.params.sha, 'the artifact sha256');
    const from = checkSha(request.params.from, 'the base sha256');
    const device = deviceOf(request, reply);
    if (!relay.mayRead(device, sha) || !relay.mayRead(device, from)) throw new HttpError(404, errorCodes.artifactNotRelayed, `no delta to ${sha} for this device`);
    if (relay.deltaSize(sha, from) === null) throw new HttpError(404, errorCodes.artifactNotRelayed, `the region has no delta from ${from} to ${sha}`);
    return serveFile(request, reply, relay.cache.deltaPath(sha, from), sha, 'delta', from);
  });

  async function serveFile(request: FastifyRequest, reply: FastifyReply, path: string, sha: string, kind: 'full' | 'delta', from?: string): Promise<FastifyReply> {
    const gone = new AbortController();
    const onClose = () => gone.abort();
    request.raw.once('close', onClose);
    // Waits its turn; a device that hangs up leaves the queue.
    const release = await relay.slots.acquire(gone.signal);
    let handle;
    try {
      handle = await open(path, 'r');
    } catch {
      release();
      throw new HttpError(503, errorCodes.artifactUnavailable, `the region's copy of ${sha} is gone; try again`);
    }
    const size = (await handle.stat()).size;
    const etag = `"${kind === 'delta' ? `${sha}.${from}` : sha}"`;
    const ifRange = request.headers['if-range'];
    const range = wantedRange(request.headers.range, typeof ifRange === 'string' ? ifRange : undefined, etag, size);
    if (range === 'unsatisfiable') {
      await handle.close();
      release();
      void reply.header('content-range', `bytes */${size}`);
      throw new HttpError(416, errorCodes.rangeNotSatisfiable, `the range ${String(request.headers.range).slice(0, 80)} is outside the ${size} bytes of this file`);
    }
    const [start, end] = range ?? [0, size - 1];
    const whole = range === null;
    const bucket = relay.bucket;
    // Runs once, whether the body was sent, cut, or never started (a device gone before the first byte).
    let cleaned = false;
    const cleanup = async (): Promise<void> => {
      if (cleaned) return;
      cleaned = true;
      request.raw.off('close', onClose);
      await handle!.close().catch(() => undefined);
      release();
    };
    async function* body(): AsyncGenerator<Buffer> {
      const hash = whole && kind === 'full' ? createHash('sha256') : null;
      let position = start;
      let complete = false;
      try {
        while (position <= end) {
          const length = Math.min(CHUNK, end - position + 1);
          if (bucket) await bucket.take(length, gone.signal);
          const buffer = Buffer.allocUnsafe(length);
          const { bytesRead } = await handle!.read(buffer, 0, length, position);
          if (bytesRead === 0) break;
          const chunk = bytesRead === length ? buffer : buffer.subarray(0, bytesRead);
          hash?.update(chunk);
          position += bytesRead;
          relay.served(sha, bytesRead, kind);
          yield chunk;
        }
        complete = position > end;
        if (hash && complete) {
          const actual = hash.digest('hex');
          if (actual !== sha) await relay.tampered(sha, actual);
        }
        if (complete && position === size) {
          const full = relay.cache.entry(sha)?.size ?? 0;
          relay.completed(sha, kind, kind === 'delta' ? Math.max(0, full - size) : 0);
        }
      } finally {
        await cleanup();
      }
    }
    void reply
      .header('accept-ranges', 'bytes')
      .header('etag', etag)
      .header('cache-control', 'private, no-transform')
      .header('content-type', kind === 'delta' ? 'application/zstd' : 'application/octet-stream')
      .header('content-length', String(end - start + 1));
    if (!whole) void reply.code(206).header('content-range', `bytes ${start}-${end}/${size}`);
    const stream = Readable.from(body(), { objectMode: false });
    stream.once('close', () => void cleanup());
    return reply.send(stream);
  }
}

/**
 * The byte range to send: [start, end] inclusive, null for the whole file, 'unsatisfiable' for a
 * range starting past the end. Anything this does not understand gets the whole file (RFC 9110 allows it).
 */
export function wantedRange(header: string | undefined, ifRange: string | undefined, etag: string, size: number): [number, number] | null | 'unsatisfiable' {
  if (!header) return null;
  if (ifRange !== undefined && ifRange !== etag) return null;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return null;
  if (match[1] === '') {
    const suffix = Number(match[2]);
    if (!Number.isSafeInteger(suffix)) return null;
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return [Math.max(0, size - suffix), size - 1];
  }
  const start = Number(match[1]);
  const last = match[2] === '' ? size - 1 : Number(match[2]);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(last)) return null;
  if (start >= size) return 'unsatisfiable';
  if (last < start) return null;
  return [start, Math.min(last, size - 1)];
}
