import { CascadeError } from '../../core/errors.js';
import type { RegionStatus } from '../../reconciler/region-status.js';

/** Reads a region's status; errors name the URL and what to check. */
export async function fetchRegionStatus(regionUrl: string): Promise<RegionStatus> {
  const url = new URL('/api/v1/status', regionUrl).toString();
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    throw new CascadeError('region-unreachable', `cannot reach the region at ${url}: ${(err as Error).cause ?? (err as Error).message}. Check --region-url and that \`cascade region\` is running.`);
  }
  if (!response.ok) {
    throw new CascadeError('region-error', `${url} answered ${response.status}: ${(await response.text()).slice(0, 300)}`);
  }
  return (await response.json()) as RegionStatus;
}
