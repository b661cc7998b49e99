import { CascadeError } from '../core/errors.js';

/** One call to a region's API for the CLI: errors name the URL, the flag and what to check. */
export async function callRegion<T>(
  regionUrl: string,
  method: 'GET' | 'POST',
  path: string,
  options: { token?: string; timeoutMs?: number } = {},
): Promise<T> {
  let url: string;
  try {
    url = new URL(path, regionUrl).toString();
  } catch {
    throw new CascadeError('invalid-arguments', `--region-url ${JSON.stringify(regionUrl)} is not a URL; use e.g. http://127.0.0.1:8080`);
  }
  let response: Response;
  try {
    response = await fetch(url, {
      method,
      headers: { accept: 'application/json', ...(options.token ? { authorization: `Bearer ${options.token}` } : {}) },
      signal: AbortSignal.timeout(options.timeoutMs ?? 15_000),
    });
  } catch (err) {
    if ((err as Error).name === 'TimeoutError') {
      throw new CascadeError('region-timeout', `${method} ${url} did not answer within ${Math.round((options.timeoutMs ?? 15_000) / 1000)}s; the pass may still be running (see \`cascade status\`)`);
    }
    const cause = (err as Error & { cause?: { code?: string; message?: string } }).cause;
    throw new CascadeError('region-unreachable', `cannot reach the region at ${url}: ${cause?.code ?? cause?.message ?? (err as Error).message}; check --region-url (or the context) and that \`cascade region\` is running`, { url });
  }
  const text = await response.text();
  if (response.status === 401 || response.status === 403) {
    throw new CascadeError('region-operator-token-required', `${method} ${url} answered ${response.status}: pass the region's --operator-token (or CASCADE_OPERATOR_TOKEN, or a context's token file)`, { url });
  }
  if (!response.ok) {
    let message = text.slice(0, 300);
    try {
      message = (JSON.parse(text) as { error?: { message?: string } }).error?.message ?? message;
    } catch {
      // not JSON: keep the text
    }
    throw new CascadeError('region-error', `${method} ${url} answered ${response.status}: ${message}`, { url, status: response.status });
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new CascadeError('region-error', `${method} ${url} answered something that is not JSON: ${text.slice(0, 120)}; is --region-url a Cascade region?`, { url });
  }
}
