import { CascadeError } from '../core/errors.js';
import type { DeploymentRolloutStatus } from '../plan/rollout/types.js';
import type { RegionStatus } from '../reconciler/region-status.js';

/**
 * The region's operator API, as the demo (playing operator and git host) calls it over HTTP.
 * Every call has a deadline, so a stuck region fails a step instead of hanging the demo.
 */

const TIMEOUT_MS = 10_000;

async function call(regionUrl: string, method: 'GET' | 'POST', path: string, signal?: AbortSignal): Promise<Response> {
  const url = new URL(path, regionUrl).toString();
  const timeout = AbortSignal.timeout(TIMEOUT_MS);
  try {
    return await fetch(url, { method, signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    throw new CascadeError('demo-region-unreachable', `${method} ${url} failed: ${String((err as Error).cause ?? (err as Error).message)}`);
  }
}

async function json<T>(response: Response, what: string): Promise<T> {
  if (!response.ok) throw new CascadeError('demo-region-error', `${what} answered ${response.status}: ${(await response.text()).slice(0, 300)}`);
  return (await response.json()) as T;
}

export async function getStatus(regionUrl: string, signal?: AbortSignal): Promise<RegionStatus> {
  return json<RegionStatus>(await call(regionUrl, 'GET', '/api/v1/status', signal), 'GET /api/v1/status');
}

/** The rollout of every Deployment, or null when this region has no rollout engine (404). */
export async function getRollouts(regionUrl: string, signal?: AbortSignal): Promise<DeploymentRolloutStatus[] | null> {
  const response = await call(regionUrl, 'GET', '/api/v1/rollouts', signal);
  if (response.status === 404) {
    await response.body?.cancel();
    return null;
  }
  const body = await json<unknown>(response, 'GET /api/v1/rollouts');
  if (Array.isArray(body)) return body as DeploymentRolloutStatus[];
  const wrapped = (body as { rollouts?: unknown } | null)?.rollouts;
  if (Array.isArray(wrapped)) return wrapped as DeploymentRolloutStatus[];
  throw new CascadeError('demo-region-error', 'GET /api/v1/rollouts answered something other than a list of rollouts');
}

/** What a git host's push webhook does: ask the region to fetch now, and wait for that pass. */
export async function triggerReconcile(regionUrl: string, signal?: AbortSignal): Promise<void> {
  const response = await call(regionUrl, 'POST', '/api/v1/reconcile?wait=true', signal);
  await json<unknown>(response, 'POST /api/v1/reconcile');
}
