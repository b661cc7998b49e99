/**
 * Fetches an artifact from its origin URL (from git) for the region's cache.
 *
 * Promises:
 * - The URL is checked like the agent checks it (core/artifact-url.ts: http(s) only, no loopback,
 *   link-local or metadata address, by name or by what DNS answers) unless an allowed origin names it.
 * - Credentials from `--artifact-credentials` go only to URLs under the prefix they are written for,
 *   and are dropped when a redirect leaves that prefix; they never reach a device or a log line.
 * - Redirects are followed at most 5 times and never from https: to http:.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import type { Readable } from 'node:stream';
import { ARTIFACT_URL_REFUSED, artifactUrlProblem, forbiddenAddressKind, isAllowedOrigin, type ArtifactUrlPolicy } from '../../core/artifact-url.js';
import { CascadeError } from '../../core/errors.js';

const MAX_REDIRECTS = 5;

/** One entry of the credentials file: request headers for URLs under `prefix`. */
export interface OriginCredential {
  prefix: string;
  headers: Record<string, string>;
}

/**
 * Reads `--artifact-credentials FILE`: JSON `{"origins": [{"prefix": "https://artifacts.example/",
 * "bearer": "TOKEN"} | {"prefix": ..., "username": "u", "password": "p"} | {"prefix": ..., "headers": {...}}]}`.
 */
export async function readOriginCredentials(file: string): Promise<OriginCredential[]> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new CascadeError('artifact-credentials-invalid', `--artifact-credentials ${file}: ${(err as Error).message}`);
  }
  const origins = (parsed as { origins?: unknown } | null)?.origins;
  if (!Array.isArray(origins)) throw new CascadeError('artifact-credentials-invalid', `--artifact-credentials ${file}: expected {"origins": [{"prefix": "https://host/path/", "bearer": "..."}]}`);
  return origins.map((entry: Record<string, unknown>, index) => {
    const where = `--artifact-credentials ${file}: origins[${index}]`;
    if (typeof entry?.['prefix'] !== 'string') throw new CascadeError('artifact-credentials-invalid', `${where}: "prefix" must be a URL prefix`);
    let prefix: URL;
    try {
      prefix = new URL(entry['prefix']);
    } catch {
      throw new CascadeError('artifact-credentials-invalid', `${where}: "${entry['prefix']}" is not a URL`);
    }
    if (prefix.protocol !== 'https:' && prefix.protocol !== 'http:') throw new CascadeError('artifact-credentials-invalid', `${where}: only http(s) origins`);
    const headers: Record<string, string> = {};
    if (typeof entry['bearer'] === 'string') headers['authorization'] = `Bearer ${entry['bearer']}`;
    if (typeof entry['username'] === 'string' && typeof entry['password'] === 'string') {
      headers['authorization'] = `Basic ${Buffer.from(`${entry['username']}:${entry['password']}`).toString('base64')}`;
    }
    if (entry['headers'] && typeof entry['headers'] === 'object') {
      for (const [name, value] of Object.entries(entry['headers'] as Record<string, unknown>)) {
        if (typeof value !== 'string' || /[\r\n]/.test(value) || !/^[A-Za-z0-9-]+$/.test(name)) throw new CascadeError('artifact-credentials-invalid', `${where}: header ${JSON.stringify(name)} must be a token name with a one-line string value`);
        headers[name.toLowerCase()] = value;
      }
    }
    if (Object.keys(headers).length === 0) throw new CascadeError('artifact-credentials-invalid', `${where}: give "bearer", "username" and "password", or "headers"`);
    return { prefix: prefix.href, headers };
  });
}

export interface OriginFetchOptions {
  policy: ArtifactUrlPolicy;
  credentials: readonly OriginCredential[];
  signal: AbortSignal;
  /** Refuse a body announced larger than this. */
  maxBytes: number;
}

/** Opens the origin's response body (200 only), following redirects under the rules above. */
export async function openOrigin(url: string, opts: OriginFetchOptions): Promise<Readable> {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    throw new CascadeError(ARTIFACT_URL_REFUSED, `artifact URL '${url.slice(0, 200)}' is not a URL`);
  }
  return open(target, opts, 0);
}

function credentialFor(url: URL, credentials: readonly OriginCredential[]): Record<string, string> {
  // The longest matching prefix wins.
  let best: OriginCredential | null = null;
  for (const credential of credentials) {
    if (isAllowedOrigin(url, [credential.prefix]) && (!best || credential.prefix.length > best.prefix.length)) best = credential;
  }
  return best ? best.headers : {};
}

function open(url: URL, opts: OriginFetchOptions, redirects: number): Promise<Readable> {
  return new Promise((resolve, reject) => {
    const problem = artifactUrlProblem(url.href, { allowHttp: true, ...opts.policy });
    if (problem) {
      reject(new CascadeError(ARTIFACT_URL_REFUSED, `artifact ${safe(url)} refused: ${problem}`));
      return;
    }
    const lookup = guardedLookup(url, opts.policy);
    const request = (url.protocol === 'https:' ? https : http).get(
      url,
      { signal: opts.signal, headers: credentialFor(url, opts.credentials), ...(lookup ? { lookup } : {}) },
      (response) => {
        const status = response.statusCode ?? 0;
        if (status >= 300 && status < 400 && response.headers.location) {
          response.resume();
          if (redirects >= MAX_REDIRECTS) return reject(new CascadeError('artifact-download-failed', `${safe(url)}: more than ${MAX_REDIRECTS} redirects`));
          let next: URL;
          try {
            next = new URL(response.headers.location, url);
          } catch {
            return reject(new CascadeError('artifact-download-failed', `${safe(url)}: redirected to an invalid URL`));
          }
          if (url.protocol === 'https:' && next.protocol !== 'https:' && !isAllowedOrigin(next, opts.policy.allowOrigins)) {
            return reject(new CascadeError(ARTIFACT_URL_REFUSED, `${safe(url)}: redirected to ${next.protocol}; a redirect may not leave https:`));
          }
          open(next, opts, redirects + 1).then(resolve, reject);
          return;
        }
        if (status !== 200) {
          response.resume();
          const temporary = status >= 500 || status === 429 || status === 408;
          return reject(new CascadeError('artifact-download-failed', `${safe(url)}: the origin answered ${status}`, { status }, { retry: temporary ? 'temporary' : 'final' }));
        }
        const announced = Number(response.headers['content-length']);
        if (Number.isFinite(announced) && announced > opts.maxBytes) {
          response.destroy();
          return reject(new CascadeError('artifact-too-large', `${safe(url)} is ${announced} bytes, more than the ${opts.maxBytes} git declares`));
        }
        resolve(response);
      },
    );
    request.on('error', (err) => {
      if (err instanceof CascadeError) reject(err);
      else reject(err.name === 'AbortError' ? err : new CascadeError('artifact-download-failed', `${safe(url)}: ${err.message}`));
    });
  });
}

/** The URL without user information, for messages. */
function safe(url: URL): string {
  const copy = new URL(url.href);
  copy.username = '';
  copy.password = '';
  return copy.href;
}

function guardedLookup(url: URL, policy: ArtifactUrlPolicy): LookupFunction | undefined {
  if (isAllowedOrigin(url, policy.allowOrigins)) return undefined;
  return (hostname, options, callback) => {
    const done = callback as (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;
    dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
      if (err) return done(err, '', 0);
      const refused = addresses.find((a) => forbiddenAddressKind(a.address) !== null);
      if (refused) {
        return done(new CascadeError(ARTIFACT_URL_REFUSED, `artifact host ${hostname} resolves to ${refused.address}, a ${forbiddenAddressKind(refused.address)} address; refused`) as unknown as NodeJS.ErrnoException, '', 0);
      }
      if ((options as { all?: boolean }).all) done(null, addresses);
      else done(null, addresses[0]!.address, addresses[0]!.family);
    });
  };
}
