import { CascadeError } from '../../core/errors.js';
import type { FleetView, RevisionView } from '../../hub/views.js';

export interface HubReadOptions {
  hubUrl: string;
  /** Read token (or the hub's secret) when the hub runs with --read-token. */
  token?: string;
}

async function getJson<T>(opts: HubReadOptions, path: string): Promise<T> {
  const url = new URL(path, opts.hubUrl).toString();
  let response: Response;
  try {
    response = await fetch(url, { headers: opts.token ? { authorization: `Bearer ${opts.token}` } : {}, signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    throw new CascadeError('hub-unreachable', `cannot reach the hub at ${url}: ${(err as Error).cause ?? (err as Error).message}. Check --hub-url and that \`cascade hub\` is running.`);
  }
  if (response.status === 401) {
    throw new CascadeError('hub-read-token-required', `${url} needs a read token: pass --hub-token (or CASCADE_HUB_READ_TOKEN)`);
  }
  if (!response.ok) {
    throw new CascadeError('hub-error', `${url} answered ${response.status}: ${(await response.text()).slice(0, 300)}`);
  }
  return (await response.json()) as T;
}

export function fetchFleet(opts: HubReadOptions): Promise<FleetView> {
  return getJson<FleetView>(opts, '/api/v1/fleet');
}

export async function fetchRecentRevisions(opts: HubReadOptions, limit: number): Promise<RevisionView[]> {
  return (await getJson<{ revisions: RevisionView[] }>(opts, `/api/v1/revisions?limit=${limit}`)).revisions;
}

export function fetchRevision(opts: HubReadOptions, sha: string): Promise<RevisionView> {
  return getJson<RevisionView>(opts, `/api/v1/revisions/${encodeURIComponent(sha)}`);
}
