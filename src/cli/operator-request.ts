import { CascadeError } from '../core/errors.js';
import { secretFrom } from './secrets.js';

/** A call to a region's operator API, with its token (`--operator-token` or CASCADE_OPERATOR_TOKEN); errors name the URL. */
export async function operatorRequest(flags: { regionUrl: string; operatorToken?: string }, method: string, path: string, body?: unknown): Promise<unknown> {
  const token = secretFrom(flags.operatorToken, 'CASCADE_OPERATOR_TOKEN');
  const url = new URL(path, flags.regionUrl).toString();
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  let response: Response;
  try {
    response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(60_000) });
  } catch (err) {
    throw new CascadeError('region-unreachable', `cannot reach ${url}: ${String((err as Error).cause ?? (err as Error).message)}; check --region-url.`);
  }
  const answer = (await response.json().catch(() => ({}))) as { error?: { code: string; message: string } };
  if (!response.ok) throw new CascadeError(answer.error?.code ?? 'region-error', `${method} ${url}: ${answer.error?.message ?? response.status}`);
  return answer;
}
