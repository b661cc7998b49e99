/**
 * Downloads an artifact the region relays (`relay` in the desired state), resuming where an
 * interrupted download stopped, or rebuilding it from a binary delta against the file the device runs.
 *
 * Promises:
 * - The sha256 and size from git decide: the file only appears at `destination` when the whole of it
 *   matches both, whichever way its bytes came (one response, several resumed ones, or a delta).
 * - A cut connection keeps what arrived in `<destination>.partial` (inside the state folder); the next
 *   attempt, in this install or after a restart, asks for the rest with `Range: bytes=N-` and
 *   `If-Range: "<sha256>"`, so a region that holds a different file answers 200 and starts over.
 * - A delta is only a shortcut: any problem with it (zstd missing, the current file not the delta's
 *   base, a result that does not match git) falls back to the full download.
 * - The region URL is the agent's own configuration and the device token is sent only there; no URL
 *   from the region or git is followed by this code.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { lstat, open, rename, rm, truncate } from 'node:fs/promises';
import http from 'node:http';
import type { Readable } from 'node:stream';
import type { FileArtifact } from '../core/app-spec.js';
import { CascadeError } from '../core/errors.js';
import { apiPaths, DELTA_FORMAT, type ArtifactRelayWire } from '../protocol/types.js';
import { sleep } from './abortable.js';
import { lazyHttps } from './http/lazy-https.js';

/** Where relayed artifacts come from: the agent's region and its device token. */
export interface RelaySource {
  regionUrl: string;
  token: () => string | null;
}

export interface RelayDownloadOptions {
  source: RelaySource;
  signal?: AbortSignal;
  timeoutMs?: number;
  /** The file of the version the device runs now, base of a delta; null when none. */
  current?: string | null;
  /** Attempts per download (each resumes the last); 6 when absent. */
  attempts?: number;
  /** Pause before the first retry, doubled up to 5 s; 250 ms when absent. */
  retryDelayMs?: number;
  /** The zstd command; `zstd` on PATH when absent. */
  zstd?: string;
  /** Called with a line worth logging (a resume, a delta refused and why). */
  note?: (message: string, fields?: Record<string, unknown>) => void;
}

export interface RelayDownloadResult {
  via: 'full' | 'delta';
  /** Bytes received over the network in this call. */
  bytesReceived: number;
  /** Requests that carried a Range header. */
  resumed: number;
}

const HEX64 = /^[0-9a-f]{64}$/;
const MAX_RETRY_DELAY_MS = 5000;

export async function downloadFromRelay(artifact: FileArtifact, relay: ArtifactRelayWire, destination: string, opts: RelayDownloadOptions): Promise<RelayDownloadResult> {
  const sha = artifact.sha256.toLowerCase();
  if (!HEX64.test(sha)) throw new CascadeError('artifact-checksum-invalid', `artifact sha256 '${String(artifact.sha256).slice(0, 80)}' is not 64 hex digits`);
  if (!Number.isSafeInteger(artifact.size) || artifact.size < 0) throw new CascadeError('artifact-size-invalid', `artifact size ${String(artifact.size)} is not a whole number of bytes`);
  const signals = [AbortSignal.timeout(opts.timeoutMs ?? 600_000)];
  if (opts.signal) signals.push(opts.signal);
  const signal = AbortSignal.any(signals);
  const result: RelayDownloadResult = { via: 'full', bytesReceived: 0, resumed: 0 };

  const delta = relay.delta;
  if (delta && opts.current && delta.format === DELTA_FORMAT && HEX64.test(delta.from) && Number.isSafeInteger(delta.size) && delta.size > 0 && delta.size < artifact.size) {
    const why = await tryDelta(artifact, sha, delta, opts.current, destination, signal, opts, result);
    if (why === null) {
      result.via = 'delta';
      return result;
    }
    if (opts.signal?.aborted) throw opts.signal.reason;
    opts.note?.(`delta not used, downloading the whole artifact: ${why}`, { sha256: sha });
  }
  await fullDownload(artifact, sha, destination, signal, opts, result);
  return result;
}

/** Rebuilds the artifact from a delta; null when it worked, else why not (the caller falls back). */
async function tryDelta(
  artifact: FileArtifact,
  sha: string,
  delta: NonNullable<ArtifactRelayWire['delta']>,
  current: string,
  destination: string,
  signal: AbortSignal,
  opts: RelayDownloadOptions,
  result: RelayDownloadResult,
): Promise<string | null> {
  const stat = await lstat(current).catch(() => null);
  if (!stat?.isFile()) return 'the current artifact file is missing';
  if ((await sha256OfFile(current)) !== delta.from) return 'the current file is not the base the delta was made from';
  const deltaPath = `${destination}.delta`;
  const rebuilt = `${destination}.rebuilt`;
  try {
    const url = regionUrl(opts.source, apiPaths.artifactDelta(sha, delta.from));
    const file = await open(deltaPath, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600);
    try {
      const response = await get(url, opts.source, signal, {});
      if (response.status !== 200) {
        response.body.resume();
        return `the region answered ${response.status} for the delta`;
      }
      let received = 0;
      for await (const chunk of response.body as AsyncIterable<Buffer>) {
        received += chunk.length;
        result.bytesReceived += chunk.length;
        if (received > delta.size) {
          response.body.destroy();
          return `the delta is larger than the ${delta.size} bytes announced`;
        }
        await file.write(chunk);
      }
      if (received !== delta.size) return `the delta is ${received} bytes, ${delta.size} were announced`;
    } finally {
      await file.close();
    }
    await rm(rebuilt, { force: true });
    const problem = await runZstd(opts.zstd ?? 'zstd', ['-d', '-q', '-f', '--long=31', `--patch-from=${current}`, '-o', rebuilt, '--', deltaPath], signal);
    if (problem) return problem;
    const [size, actual] = [(await lstat(rebuilt)).size, await sha256OfFile(rebuilt)];
    if (size !== artifact.size || actual !== sha) return `the delta's result (${size} bytes, sha256 ${actual.slice(0, 12)}…) does not match git (${artifact.size} bytes, ${sha.slice(0, 12)}…)`;
    await rename(rebuilt, destination);
    return null;
  } catch (err) {
    if (signal.aborted) throw err;
    return err instanceof Error ? err.message : String(err);
  } finally {
    await rm(deltaPath, { force: true });
    await rm(rebuilt, { force: true });
  }
}

function runZstd(command: string, args: string[], signal: AbortSignal): Promise<string | null> {
  return new Promise((resolve) => {
    // execFile: no shell; every path is one argument.
    execFile(command, args, { signal, maxBuffer: 64 * 1024 }, (err, _stdout, stderr) => {
      if (!err) resolve(null);
      else if ((err as NodeJS.ErrnoException).code === 'ENOENT') resolve('zstd is not installed on this device');
      else resolve(`zstd failed: ${String(stderr).trim().slice(0, 200) || err.message}`);
    });
  });
}

async function fullDownload(artifact: FileArtifact, sha: string, destination: string, signal: AbortSignal, opts: RelayDownloadOptions, result: RelayDownloadResult): Promise<void> {
  const partial = `${destination}.partial`;
  const attempts = Math.max(1, opts.attempts ?? 6);
  let delay = opts.retryDelayMs ?? 250;
  let restartedAfterMismatch = false;
  let lastError: unknown = null;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      const have = await partialSize(partial, artifact.size);
      if (have < artifact.size) await receive(artifact, sha, partial, have, signal, opts, result);
      const actual = await sha256OfFile(partial);
      const size = (await lstat(partial)).size;
      if (size !== artifact.size) {
        throw new CascadeError('artifact-size-mismatch', `artifact ${sha.slice(0, 12)}… from the region is ${size} bytes, git says ${artifact.size}; not installed`, undefined, { retry: 'temporary' });
      }
      if (actual !== sha) {
        await rm(partial, { force: true });
        // A resumed file may hold the start of another file: one more try from byte zero.
        if (have > 0 && !restartedAfterMismatch) {
          restartedAfterMismatch = true;
          opts.note?.('the resumed artifact does not match git; downloading it again from the start', { sha256: sha });
          attempt--;
          continue;
        }
        throw new CascadeError('artifact-checksum-mismatch', `sha256 of the artifact from the region is ${actual}, git says ${sha}; not installed`);
      }
      await rename(partial, destination);
      return;
    } catch (err) {
      if (signal.aborted) throw opts.signal?.aborted ? opts.signal.reason : new CascadeError('artifact-download-failed', `artifact ${sha.slice(0, 12)}…: download timed out; ${await partialSize(partial, artifact.size)} bytes kept to resume`);
      if (err instanceof CascadeError && err.code === 'artifact-checksum-mismatch') throw err;
      if (err instanceof CascadeError && err.retry === 'final') throw err;
      lastError = err;
      if (attempt < attempts) {
        opts.note?.(`artifact download interrupted (${describe(err)}); resuming`, { sha256: sha, attempt });
        await sleep(delay, signal);
        delay = Math.min(MAX_RETRY_DELAY_MS, delay * 2);
      }
    }
  }
  throw new CascadeError('artifact-download-failed', `artifact ${sha.slice(0, 12)}… from the region: ${describe(lastError)} (after ${attempts} attempts; the part received is kept to resume)`);
}

/** Bytes of the partial file worth resuming from; 0 (and the file emptied) when it cannot be trusted. */
async function partialSize(partial: string, expected: number): Promise<number> {
  const stat = await lstat(partial).catch(() => null);
  if (!stat) return 0;
  if (!stat.isFile()) throw new CascadeError('state-path-refused', `${partial} is not a regular file; refusing to write through it`);
  if (stat.size > expected) {
    await truncate(partial, 0);
    return 0;
  }
  return stat.size;
}

/** Appends the rest of the artifact, from byte `have`, to the partial file. */
async function receive(artifact: FileArtifact, sha: string, partial: string, have: number, signal: AbortSignal, opts: RelayDownloadOptions, result: RelayDownloadResult): Promise<void> {
  const headers: Record<string, string> = {};
  if (have > 0) {
    headers['range'] = `bytes=${have}-`;
    headers['if-range'] = `"${sha}"`;
    result.resumed++;
  }
  const response = await get(regionUrl(opts.source, apiPaths.artifact(sha)), opts.source, signal, headers);
  let offset: number;
  if (response.status === 206 && have > 0) {
    const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(String(response.headers['content-range'] ?? ''));
    if (!range || Number(range[1]) !== have || Number(range[3]) !== artifact.size) {
      response.body.resume();
      await truncate(partial, 0);
      throw new CascadeError('artifact-download-failed', `the region answered a range request with Content-Range '${String(response.headers['content-range'])}'; starting over`, undefined, { retry: 'temporary' });
    }
    offset = have;
  } else if (response.status === 200) {
    offset = 0;
  } else if (response.status === 416) {
    response.body.resume();
    await truncate(partial, 0);
    throw new CascadeError('artifact-download-failed', 'the region refused the range asked for; starting over', undefined, { retry: 'temporary' });
  } else {
    response.body.resume();
    const temporary = response.status >= 500 || response.status === 429 || response.status === 404 || response.status === 409;
    throw new CascadeError('artifact-download-failed', `the region answered ${response.status} for artifact ${sha.slice(0, 12)}…`, { status: response.status }, { retry: temporary ? 'temporary' : 'final' });
  }
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW | (offset === 0 ? constants.O_TRUNC : constants.O_APPEND);
  const file = await open(partial, flags, 0o600);
  try {
    let total = offset;
    for await (const chunk of response.body as AsyncIterable<Buffer>) {
      total += chunk.length;
      result.bytesReceived += chunk.length;
      if (total > artifact.size) {
        response.body.destroy();
        await file.truncate(0);
        throw new CascadeError('artifact-too-large', `the artifact from the region is larger than the ${artifact.size} bytes git declares; not installed`);
      }
      await file.write(chunk);
    }
    await file.sync();
  } finally {
    await file.close();
  }
}

function regionUrl(source: RelaySource, path: string): URL {
  return new URL(source.regionUrl.replace(/\/+$/, '') + path);
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Readable;
}

function get(url: URL, source: RelaySource, signal: AbortSignal, headers: Record<string, string>): Promise<Answer> {
  const token = source.token();
  if (token === null) return Promise.reject(new CascadeError('device-token-missing', 'the device has no token yet; enrol first', undefined, { retry: 'temporary' }));
  return new Promise((resolve, reject) => {
    const request = (url.protocol === 'https:' ? lazyHttps() : http).get(url, { signal, headers: { ...headers, authorization: `Bearer ${token}` } }, (response) => {
      resolve({ status: response.statusCode ?? 0, headers: response.headers, body: response });
    });
    request.on('error', reject);
  });
}

export async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) hash.update(chunk);
  return hash.digest('hex');
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
