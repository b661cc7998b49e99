import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { ArtifactUrlPolicy } from '../../core/artifact-url.js';
import type { StateStore } from '../../reconciler/state-store.js';
import { ArtifactRelay, DEFAULT_CACHE_BYTES, DEFAULT_DELTA_SHARE, DEFAULT_RELAY_CONCURRENCY } from './artifact-relay.js';
import { readOriginCredentials } from './origin-fetcher.js';
import { zstdDeltaTool } from './delta-maker.js';

/** The relay's flags (`cascade region --artifact-cache-size --artifact-credentials --relay-rate --relay-concurrency`). */
export interface ArtifactRelayConfig {
  cacheBytes?: number;
  /** JSON file of origin credentials (origin-fetcher.ts: readOriginCredentials). */
  credentialsFile?: string;
  /** Bytes per second for all devices together; absent = no limit. */
  rate?: number;
  concurrency?: number;
  /** Offer a delta when it is at most this share of the full artifact (0..1). */
  deltaShare?: number;
  /** The zstd command (`zstd` on PATH when absent). */
  zstd?: string;
}

/** Opens the relay's cache under `<data>/artifacts` and reads its credentials; throws on a bad file. */
export async function startArtifactRelay(
  config: ArtifactRelayConfig,
  deps: { dataDir: string; store: StateStore; log: Logger; registry?: Registry; policy?: ArtifactUrlPolicy; onChange: () => void },
): Promise<ArtifactRelay> {
  const credentials = config.credentialsFile ? await readOriginCredentials(config.credentialsFile) : [];
  const deltaTool = zstdDeltaTool(config.zstd);
  if (!(await deltaTool.available())) deps.log.warn(`the zstd command (${config.zstd ?? 'zstd'}) is not installed: the artifact relay sends whole files, no deltas (Debian/Ubuntu: apt-get install zstd)`);
  return ArtifactRelay.open({
    dir: join(deps.dataDir, 'artifacts'),
    cacheLimitBytes: config.cacheBytes ?? DEFAULT_CACHE_BYTES,
    credentials,
    policy: deps.policy,
    rate: config.rate ?? null,
    concurrency: config.concurrency ?? DEFAULT_RELAY_CONCURRENCY,
    deltaShare: config.deltaShare ?? DEFAULT_DELTA_SHARE,
    store: deps.store,
    log: deps.log,
    registry: deps.registry,
    onChange: deps.onChange,
    deltaTool,
  });
}
