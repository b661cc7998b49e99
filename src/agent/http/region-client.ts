import http from 'node:http';
import { CascadeError } from '../../core/errors.js';
import type { DeviceId, Labels } from '../../core/types.js';
import { proofPayload, type ProofPurpose } from '../../protocol/device-identity.js';
import type { DeviceKey } from '../device-key.js';
import { lazyHttps } from './lazy-https.js';
import {
  apiPaths,
  errorCodes,
  type ChallengeResponse,
  type EnrollPendingResponse,
  type KeyProof,
  type RenewTokenRequest,
  type DesiredResponse,
  type EnrollRequest,
  type EnrollResponse,
  type ErrorBody,
  type InventoryDevice,
  type ReportRequest,
} from '../../protocol/types.js';

/** An HTTP answer outside 2xx/304 from the region: status, the region's error code and the URL. */
export class RegionHttpError extends CascadeError {
  readonly status: number;
  readonly url: string;
  /** How long the region asked the device to wait before trying again (its Retry-After), if it said. */
  readonly retryAfterMs: number | null;

  constructor(status: number, code: string, message: string, url: string, retryAfterMs: number | null = null) {
    // The region's 5xx and 429 pass, and so does waiting for approval (202); its other refusals stand until the request changes.
    super(code, message, { status, url }, { retry: status >= 500 || status === 429 || status === 202 ? 'temporary' : 'final' });
    this.name = 'RegionHttpError';
    this.status = status;
    this.url = url;
    this.retryAfterMs = retryAfterMs;
  }
}

/** The longest Retry-After a device honours; a longer one is taken as this. */
const MAX_RETRY_AFTER_MS = 10 * 60_000;

/** A Retry-After header in milliseconds (delay-seconds or an HTTP date), null when absent or unreadable. */
export function parseRetryAfter(header: string | string[] | undefined, now = Date.now()): number | null {
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined || value.trim() === '') return null;
  const text = value.trim();
  const ms = /^\d+$/.test(text) ? Number(text) * 1000 : Date.parse(text) - now;
  if (!Number.isFinite(ms)) return null;
  return Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS);
}

export function isRegionHttpError(err: unknown): err is RegionHttpError {
  return err instanceof RegionHttpError;
}

export type DesiredResult =
  | { status: 200; body: DesiredResponse; etag: string | null }
  | { status: 304 };

/**
 * Times a request is sent again at once when it failed on a reused keep-alive socket before any byte
 * of an answer (see sendRequest). Each such failure used up one stale socket of the pool.
 */
const STALE_SOCKET_RETRIES = 3;
/** Errors of a connection the server closed or reset under a request it had not answered. */
const STALE_SOCKET_ERRORS = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED']);
/** Failures of sendAttempt that may be sent again (see RequestOptions.replayable). */
const staleSocketFailures = new WeakSet<object>();

/**
 * Keep-alive agents shared by every client in the process: the simulator runs thousands of
 * devices in one process, each holding a long poll open, so sockets must be reused and unbounded (free ones too).
 */
const sharedHttpAgent = new http.Agent(deviceAgentOptions(Infinity));
let sharedHttpsAgent: http.Agent | undefined;

/**
 * Options of a keep-alive agent for `devices` devices of one process, each with one request at a time
 * (a long poll, a report): a socket per device, and as many kept free between requests. With Node's
 * default of 256 free sockets, a commit that answers thousands of polls at once closes all but 256 of
 * their sockets, and the reports that follow open thousands of new connections in one burst.
 */
export function deviceAgentOptions(devices: number): http.AgentOptions {
  // Twice the devices at most: a device's socket may still be closing while its next one opens.
  return { keepAlive: true, maxSockets: Math.max(2 * devices, 16), maxFreeSockets: Math.max(devices, 16) };
}

const DEFAULT_TIMEOUT_MS = 30_000;
/** A long poll may legitimately take `wait` seconds; allow this much more before giving up. */
const LONG_POLL_GRACE_MS = 15_000;
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

interface RequestOptions {
  method: 'GET' | 'POST';
  url: string;
  headers?: Record<string, string>;
  body?: unknown;
  timeoutMs: number;
  signal?: AbortSignal;
  agent?: http.Agent;
  /**
   * Whether the region may receive this request twice with no harm: GETs, and POSTs the region
   * de-duplicates (a report with a `seq`: a second copy is acknowledged, not applied) or whose second
   * copy supersedes the first (a challenge, an enrolment, a token renewal: only the last nonce or token
   * counts; a key proof whose nonce the first copy spent is refused, and the device enrols again as after
   * any failure). Such a request is sent again when it failed on a reused keep-alive socket before any
   * byte of the answer came back. GETs are replayable by default; POSTs are not unless they say so.
   */
  replayable?: boolean;
}

function joinUrl(base: string, path: string): string {
  return base.replace(/\/+$/, '') + path;
}

/**
 * Sends the request; when it fails on a kept-alive socket the agent reused, before a byte of the answer
 * came back (ECONNRESET, EPIPE: the server closed that idle connection just as the request went out on
 * it), and it is replayable, sends it again at once, as undici and got do for idempotent requests (Node's
 * documentation of `request.reusedSocket` advises the same). The server closed the connection without
 * answering, so it either never read the request or, for the POSTs marked replayable, reading it twice
 * does no harm.
 */
async function sendRequest(opts: RequestOptions): Promise<RawResponse> {
  const replayable = opts.replayable ?? opts.method === 'GET';
  for (let retries = 0; ; retries++) {
    try {
      return await sendAttempt(opts);
    } catch (err) {
      if (!replayable || retries >= STALE_SOCKET_RETRIES || opts.signal?.aborted || !staleSocketFailures.has(err as object)) throw err;
    }
  }
}

function sendAttempt(opts: RequestOptions): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    let target: URL;
    try {
      target = new URL(opts.url);
    } catch {
      reject(new CascadeError('region-url-invalid', `region URL '${opts.url}' is not a valid URL (expected e.g. http://127.0.0.1:8080)`));
      return;
    }
    const isHttps = target.protocol === 'https:';
    if (!isHttps && target.protocol !== 'http:') {
      reject(new CascadeError('region-url-invalid', `region URL '${opts.url}' must be http:// or https://`));
      return;
    }
    const payload = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
    const headers: Record<string, string> = { accept: 'application/json', ...opts.headers };
    if (payload) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    }
    const agent = opts.agent ?? (isHttps ? (sharedHttpsAgent ??= new (lazyHttps().Agent)(deviceAgentOptions(Infinity))) : sharedHttpAgent);
    const request = (isHttps ? lazyHttps() : http).request(target, {
      method: opts.method,
      headers,
      agent,
      signal: opts.signal,
    });
    // Bytes the socket had read when this request got it: more by the time of an error means an answer had begun.
    let readBefore = -1;
    let answered = false;
    request.once('socket', (socket) => {
      readBefore = socket.bytesRead;
    });
    request.setTimeout(opts.timeoutMs, () => {
      request.destroy(new CascadeError('region-timeout', `${opts.method} ${opts.url}: no answer within ${opts.timeoutMs} ms`, { url: opts.url }));
    });
    request.on('error', (err: Error & { code?: string }) => {
      if (err.name === 'AbortError' || err instanceof CascadeError) {
        reject(err);
        return;
      }
      const failure = new CascadeError('region-unreachable', `${opts.method} ${opts.url}: cannot reach the region (${err.code ?? err.message}); check --region-url and that the region is running`, { url: opts.url, cause: err.code ?? err.message });
      const socket = request.socket;
      if (request.reusedSocket && !answered && socket && socket.bytesRead === readBefore && STALE_SOCKET_ERRORS.has(err.code ?? '')) staleSocketFailures.add(failure);
      reject(failure);
    });
    request.on('response', (response) => {
      answered = true;
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_RESPONSE_BYTES) {
          request.destroy(new CascadeError('region-response-too-large', `${opts.method} ${opts.url}: answer larger than ${MAX_RESPONSE_BYTES} bytes`, { url: opts.url }));
          return;
        }
        chunks.push(chunk);
      });
      response.on('end', () => {
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks).toString('utf8') });
      });
      // The connection lost in the middle of the answer: Node reports it on the response alone (the
      // request emits no error once it has one), so without this the request would never settle.
      response.on('error', (err: Error & { code?: string }) => {
        if (err instanceof CascadeError) reject(err);
        else reject(new CascadeError('region-unreachable', `${opts.method} ${opts.url}: the connection to the region was lost in the middle of its answer (${err.code ?? err.message})`, { url: opts.url, cause: err.code ?? err.message }));
        request.destroy(err);
      });
    });
    request.end(payload);
  });
}

function parseJson(raw: RawResponse, method: string, url: string): unknown {
  try {
    return JSON.parse(raw.body);
  } catch {
    throw new RegionHttpError(raw.status, 'region-bad-response', `${method} ${url}: the region answered ${raw.status} with a body that is not JSON`, url);
  }
}

function toHttpError(raw: RawResponse, method: string, url: string): RegionHttpError {
  let code = `http-${raw.status}`;
  let message = raw.body.slice(0, 200);
  try {
    const body = JSON.parse(raw.body) as Partial<ErrorBody>;
    if (body.error && typeof body.error.code === 'string') {
      code = body.error.code;
      message = String(body.error.message ?? '');
    }
  } catch {
    // Not a JSON error body (a proxy in between, say): keep the raw text.
  }
  return new RegionHttpError(raw.status, code, `${method} ${url}: ${raw.status} ${message}`, url, parseRetryAfter(raw.headers['retry-after']));
}

/**
 * Sends, and once more at once when the answer is 408: the server closed the connection without handling
 * the request (Node's request or headers timeout hit a request it had not read in full, e.g. while it
 * was busy), so repeating it on a new connection is safe, even for a POST (RFC 9110, 15.5.9).
 */
async function sendOnce408(opts: RequestOptions): Promise<RawResponse> {
  const raw = await sendRequest(opts);
  if (raw.status !== 408 || opts.signal?.aborted) return raw;
  return sendRequest(opts);
}

async function requestJson<T>(opts: RequestOptions, expected: number[]): Promise<{ raw: RawResponse; body: T | null }> {
  const raw = await sendOnce408(opts);
  if (!expected.includes(raw.status)) throw toHttpError(raw, opts.method, opts.url);
  if (raw.status === 304 || raw.body === '') return { raw, body: null };
  return { raw, body: parseJson(raw, opts.method, opts.url) as T };
}

export interface RegionClientOptions {
  /** Base URL of the region, e.g. http://127.0.0.1:8080 */
  regionUrl: string;
  deviceId: DeviceId;
  /** Device token from an earlier enrolment, if any. */
  token?: string | null;
  /** Defaults to a process-wide keep-alive agent with unbounded sockets. */
  agent?: http.Agent;
  /** Timeout of enrol and report calls; long polls get their wait plus a grace period. */
  timeoutMs?: number;
}

/** What one device says to its region. Keeps the device token once enrolled. */
export class RegionClient {
  readonly regionUrl: string;
  readonly deviceId: DeviceId;
  private deviceToken: string | null;
  private readonly agent?: http.Agent;
  private readonly timeoutMs: number;

  constructor(opts: RegionClientOptions) {
    this.regionUrl = opts.regionUrl;
    this.deviceId = opts.deviceId;
    this.deviceToken = opts.token ?? null;
    this.agent = opts.agent;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  get token(): string | null {
    return this.deviceToken;
  }

  setToken(token: string | null): void {
    this.deviceToken = token;
  }

  /**
   * Enrols the device and keeps the token the region issues. With a key, the enrolment carries the
   * public key and a proof over a fresh nonce (an id bound to that key re-enrols only so). Under
   * `--enrollment-policy approve` the region answers 202: this throws a temporary RegionHttpError
   * `enrollment-pending`, and the caller asks again later.
   */
  async enroll(labels: Labels, enrollmentToken: string | null, signal?: AbortSignal, key?: DeviceKey): Promise<EnrollResponse> {
    const body: EnrollRequest = { deviceId: this.deviceId, labels };
    if (enrollmentToken !== null) body.enrollmentToken = enrollmentToken;
    const proof = key ? await this.prove(key, 'enroll', signal) : null;
    if (key && proof) {
      body.publicKey = key.publicKey;
      body.proof = proof;
    }
    const url = joinUrl(this.regionUrl, apiPaths.enroll);
    const { raw, body: answer } = await requestJson<EnrollResponse | EnrollPendingResponse>(
      // A second enrolment supersedes the first (its token is the one that counts), or is refused when the
      // first spent its proof's nonce (the loop enrols again): one sent twice does no harm.
      { method: 'POST', url, body, timeoutMs: this.timeoutMs, signal, agent: this.agent, replayable: true },
      [201, 202],
    );
    if (raw.status === 202) {
      const pending = answer as EnrollPendingResponse | null;
      throw new RegionHttpError(202, errorCodes.enrollmentPending, pending?.message ?? `device ${this.deviceId} waits for approval`, url);
    }
    return this.keepToken(answer as EnrollResponse | null, url);
  }

  /** A new device token for a proof made with the device key: needs no enrolment token. */
  async renewToken(key: DeviceKey, signal?: AbortSignal): Promise<EnrollResponse> {
    const url = joinUrl(this.regionUrl, apiPaths.renewToken(this.deviceId));
    const proof = await this.prove(key, 'renew-token', signal);
    if (!proof) throw new RegionHttpError(404, errorCodes.notFound, `POST ${url}: this region does not renew tokens with a key proof`, url);
    const body: RenewTokenRequest = { proof };
    const { body: answer } = await requestJson<EnrollResponse>({ method: 'POST', url, body, timeoutMs: this.timeoutMs, signal, agent: this.agent, replayable: true }, [201]);
    return this.keepToken(answer, url);
  }

  private keepToken(answer: EnrollResponse | null, url: string): EnrollResponse {
    if (!answer || typeof answer.token !== 'string') {
      throw new CascadeError('region-bad-response', `POST ${url}: the answer has no token`);
    }
    this.deviceToken = answer.token;
    return answer;
  }

  /**
   * Asks the region for a nonce and signs it (protocol/device-identity.ts). Null when the region has no
   * challenge endpoint (a region older than device keys): the device then enrols as before, without its key.
   */
  private async prove(key: DeviceKey, purpose: ProofPurpose, signal?: AbortSignal): Promise<KeyProof | null> {
    const url = joinUrl(this.regionUrl, apiPaths.challenge(this.deviceId));
    let body: ChallengeResponse | null;
    try {
      ({ body } = await requestJson<ChallengeResponse>({ method: 'POST', url, body: {}, timeoutMs: this.timeoutMs, signal, agent: this.agent, replayable: true }, [200]));
    } catch (err) {
      if (err instanceof RegionHttpError && err.status === 404 && err.code === errorCodes.notFound) return null;
      throw err;
    }
    if (!body || typeof body.nonce !== 'string' || typeof body.region !== 'string') {
      throw new CascadeError('region-bad-response', `POST ${url}: the answer has no nonce`);
    }
    return { nonce: body.nonce, signature: key.sign(proofPayload(purpose, body.region, this.deviceId, body.nonce)) };
  }

  async report(body: ReportRequest, signal?: AbortSignal): Promise<void> {
    await requestJson(
      // With a seq the region applies a report once, however often it arrives (report-order.ts).
      { method: 'POST', url: joinUrl(this.regionUrl, apiPaths.report(this.deviceId)), headers: this.authHeaders(), body, timeoutMs: this.timeoutMs, signal, agent: this.agent, replayable: body.seq !== undefined },
      [200],
    );
  }

  /**
   * Asks for the device's desired state. With the ETag of the last answer and `waitSeconds` > 0 the
   * region holds the request until that state changes (200) or the wait ends (304).
   */
  async getDesired(etag: string | null, waitSeconds: number, signal?: AbortSignal): Promise<DesiredResult> {
    const headers = this.authHeaders();
    if (etag !== null) headers['if-none-match'] = etag;
    const url = `${joinUrl(this.regionUrl, apiPaths.desired(this.deviceId))}?wait=${Math.max(0, Math.floor(waitSeconds))}`;
    const { raw, body } = await requestJson<DesiredResponse>(
      { method: 'GET', url, headers, timeoutMs: waitSeconds * 1000 + LONG_POLL_GRACE_MS, signal, agent: this.agent },
      [200, 304],
    );
    if (raw.status === 304) return { status: 304 };
    if (!body) throw new CascadeError('region-bad-response', `GET ${url}: empty desired state`);
    const header = raw.headers.etag;
    return { status: 200, body, etag: typeof header === 'string' ? header : null };
  }

  private authHeaders(): Record<string, string> {
    if (this.deviceToken === null) {
      throw new CascadeError('device-not-enrolled', `device ${this.deviceId} has no device token yet: enrol it first`);
    }
    return { authorization: `Bearer ${this.deviceToken}` };
  }
}

/** `GET /api/v1/devices`: the region's live inventory. */
export async function fetchInventory(regionUrl: string, opts: { agent?: http.Agent; timeoutMs?: number; signal?: AbortSignal } = {}): Promise<InventoryDevice[]> {
  const url = joinUrl(regionUrl, apiPaths.devices);
  const { body } = await requestJson<InventoryDevice[]>(
    { method: 'GET', url, timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, signal: opts.signal, agent: opts.agent },
    [200],
  );
  return body ?? [];
}
