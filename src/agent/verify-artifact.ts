import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { FileArtifact } from '../core/app-spec.js';
import { CascadeError } from '../core/errors.js';

const MAX_REDIRECTS = 5;

function openHttp(url: URL, signal: AbortSignal, expectedSize: number, redirects = 0): Promise<Readable> {
  return new Promise((resolve, reject) => {
    const request = (url.protocol === 'https:' ? https : http).get(url, { signal }, (response) => {
      const status = response.statusCode ?? 0;
      if (status >= 300 && status < 400 && response.headers.location) {
        response.resume();
        if (redirects >= MAX_REDIRECTS) {
          reject(new CascadeError('artifact-download-failed', `${url}: more than ${MAX_REDIRECTS} redirects`));
          return;
        }
        openHttp(new URL(response.headers.location, url), signal, expectedSize, redirects + 1).then(resolve, reject);
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
    request.on('error', (err) => reject(err.name === 'AbortError' ? err : new CascadeError('artifact-download-failed', `${url}: ${err.message}`)));
  });
}

function openSource(url: URL, signal: AbortSignal, expectedSize: number): Promise<Readable> {
  if (url.protocol === 'file:') return Promise.resolve(createReadStream(fileURLToPath(url), { signal }));
  if (url.protocol === 'http:' || url.protocol === 'https:') return openHttp(url, signal, expectedSize);
  return Promise.reject(new CascadeError('artifact-url-unsupported', `${url}: only http://, https:// and file:// artifacts are supported`));
}

/**
 * Downloads an artifact to `destination`, checking it against the size and sha256 from the fleet
 * repository while it streams: reading stops as soon as it is larger than declared, and the file
 * only appears at `destination` when both match. Throws a CascadeError saying what did not match.
 */
export async function fetchVerifiedArtifact(artifact: FileArtifact, destination: string, opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<void> {
  const expectedSha = artifact.sha256.toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(expectedSha)) {
    throw new CascadeError('artifact-checksum-invalid', `artifact ${artifact.url}: sha256 '${artifact.sha256}' in the fleet repository is not 64 hex digits`);
  }
  let url: URL;
  try {
    url = new URL(artifact.url);
  } catch {
    throw new CascadeError('artifact-url-unsupported', `artifact URL '${artifact.url}' is not a valid URL`);
  }
  const signals = [AbortSignal.timeout(opts.timeoutMs ?? 600_000)];
  if (opts.signal) signals.push(opts.signal);
  const signal = AbortSignal.any(signals);

  await mkdir(dirname(destination), { recursive: true });
  const partial = `${destination}.partial`;
  const file = await open(partial, 'w', 0o600);
  let complete = false;
  try {
    const source = await openSource(url, signal, artifact.size);
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
