import { createHash } from 'node:crypto';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { constants } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import http from 'node:http';
import type { LookupFunction } from 'node:net';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';
import type { FileArtifact } from '../core/app-spec.js';
import { ARTIFACT_URL_REFUSED, artifactUrlProblem, forbiddenAddressKind, isAllowedOrigin, type ArtifactUrlPolicy } from '../core/artifact-url.js';
import { CascadeError } from '../core/errors.js';
import { lazyHttps } from './http/lazy-https.js';

const MAX_REDIRECTS = 5;

/**
 * The agent's own check of an artifact URL before it connects (the region checked it too): only
 * http: and https:, no loopback, link-local or unspecified host unless an allowed origin names it.
 * Whether plain http: is acceptable is the fleet's decision (App or Region setting, region flag),
 * which the region has enforced; so the agent accepts http: here, and never downgrades on a redirect.
 */
export function checkArtifactUrl(url: URL, policy: ArtifactUrlPolicy): void {
  const problem = artifactUrlProblem(url.href, { allowHttp: true, ...policy });
  if (problem) throw new CascadeError(ARTIFACT_URL_REFUSED, `artifact ${url.href} refused: ${problem}`);
}

/** DNS lookup that refuses loopback, link-local and unspecified answers (a name that resolves to 169.254.169.254 is no better than the address). */
function guardedLookup(url: URL, policy: ArtifactUrlPolicy): LookupFunction | undefined {
  if (isAllowedOrigin(url, policy.allowOrigins)) return undefined;
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
      if (err) {
        (callback as (err: NodeJS.ErrnoException | null, address: string, family: number) => void)(err, '', 0);
        return;
      }
      const refused = addresses.find((a) => forbiddenAddressKind(a.address) !== null);
      if (refused) {
        const error = new CascadeError(ARTIFACT_URL_REFUSED, `artifact host ${hostname} resolves to ${refused.address}, a ${forbiddenAddressKind(refused.address)} address; refused`);
        (callback as (err: NodeJS.ErrnoException | null, address: string, family: number) => void)(error as NodeJS.ErrnoException, '', 0);
        return;
      }
      if ((options as { all?: boolean }).all) (callback as (err: null, addresses: LookupAddress[]) => void)(null, addresses);
      else (callback as (err: null, address: string, family: number) => void)(null, addresses[0]!.address, addresses[0]!.family);
    });
  };
}

function openHttp(url: URL, signal: AbortSignal, expectedSize: number, policy: ArtifactUrlPolicy, redirects = 0): Promise<Readable> {
  return new Promise((resolve, reject) => {
    try {
      checkArtifactUrl(url, policy);
    } catch (err) {
      reject(err);
      return;
    }
    const lookup = guardedLookup(url, policy);
    const request = (url.protocol === 'https:' ? lazyHttps() : http).get(url, { signal, ...(lookup ? { lookup } : {}) }, (response) => {
      const status = response.statusCode ?? 0;
      if (status >= 300 && status < 400 && response.headers.location) {
        response.resume();
        if (redirects >= MAX_REDIRECTS) {
          reject(new CascadeError('artifact-download-failed', `${url}: more than ${MAX_REDIRECTS} redirects`));
          return;
        }
        let target: URL;
        try {
          target = new URL(response.headers.location, url);
        } catch {
          reject(new CascadeError('artifact-download-failed', `${url}: redirected to an invalid URL`));
          return;
        }
        // A redirect is checked like the URL from git, and never goes from https: to http:.
        if (url.protocol === 'https:' && target.protocol !== 'https:' && !isAllowedOrigin(target, policy.allowOrigins)) {
          reject(new CascadeError(ARTIFACT_URL_REFUSED, `${url}: redirected to ${target.protocol} (${target.href}); a redirect may not leave https:`));
          return;
        }
        openHttp(target, signal, expectedSize, policy, redirects + 1).then(resolve, reject);
        return;
      }
      if (status !== 200) {
        response.resume();
        reject(new CascadeError('artifact-download-failed', `${url}: the server answered ${status}`));
        return;
      }
      const announced = Number(response.headers['content-length']);
      if (Number.isFinite(announced) && announced > expectedSize) {
        response.destroy();
        reject(new CascadeError('artifact-too-large', `${url} is ${announced} bytes, more than the ${expectedSize} the fleet repository declares; not installed`));
        return;
      }
      resolve(response);
    });
    request.on('error', (err) => {
      if (err instanceof CascadeError) reject(err);
      else reject(err.name === 'AbortError' ? err : new CascadeError('artifact-download-failed', `${url}: ${err.message}`));
    });
  });
}

/**
 * Downloads an artifact to `destination`, checking it against the size and sha256 from the fleet
 * repository while it streams: reading stops as soon as it is larger than declared, and the file
 * only appears at `destination` when both match. Throws a CascadeError saying what did not match.
 */
export async function fetchVerifiedArtifact(
  artifact: FileArtifact,
  destination: string,
  opts: { signal?: AbortSignal; timeoutMs?: number; policy?: ArtifactUrlPolicy } = {},
): Promise<void> {
  const expectedSha = artifact.sha256.toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(expectedSha)) {
    throw new CascadeError('artifact-checksum-invalid', `artifact ${artifact.url}: sha256 '${artifact.sha256}' in the fleet repository is not 64 hex digits`);
  }
  let url: URL;
  try {
    url = new URL(artifact.url);
  } catch {
    throw new CascadeError(ARTIFACT_URL_REFUSED, `artifact URL '${artifact.url}' is not a valid URL`);
  }
  const policy = opts.policy ?? {};
  // Before any file is made or any connection opened.
  checkArtifactUrl(url, policy);
  const signals = [AbortSignal.timeout(opts.timeoutMs ?? 600_000)];
  if (opts.signal) signals.push(opts.signal);
  const signal = AbortSignal.any(signals);

  await mkdir(dirname(destination), { recursive: true });
  const partial = `${destination}.partial`;
  // O_NOFOLLOW: a symlink planted at the partial file's name is not written through.
  const file = await open(partial, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600);
  let complete = false;
  try {
    const source = await openHttp(url, signal, artifact.size, policy);
    const hash = createHash('sha256');
    let received = 0;
    try {
      for await (const chunk of source as AsyncIterable<Buffer>) {
        received += chunk.length;
        if (received > artifact.size) {
          throw new CascadeError('artifact-too-large', `${artifact.url} is larger than the ${artifact.size} bytes the fleet repository declares; stopped reading, not installed`);
        }
        hash.update(chunk);
        await file.write(chunk);
      }
    } catch (err) {
      if (err instanceof CascadeError) throw err;
      if (opts.signal?.aborted) throw err;
      const reason = signal.aborted ? 'timed out' : (err as Error).message;
      throw new CascadeError('artifact-download-failed', `${artifact.url}: download failed (${reason})`);
    } finally {
      source.destroy();
    }
    if (received !== artifact.size) {
      throw new CascadeError('artifact-size-mismatch', `${artifact.url} is ${received} bytes, the fleet repository says ${artifact.size}; not installed`);
    }
    const actualSha = hash.digest('hex');
    if (actualSha !== expectedSha) {
      throw new CascadeError('artifact-checksum-mismatch', `sha256 of ${artifact.url} is ${actualSha}, the fleet repository says ${expectedSha}; not installed`);
    }
    await file.sync();
    complete = true;
  } finally {
    await file.close();
    if (complete) await rename(partial, destination);
    else await rm(partial, { force: true });
  }
}
