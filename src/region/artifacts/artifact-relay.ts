/**
 * The region's artifact relay: each artifact crosses the site's uplink once, devices download it from
 * the region (resumable, throttled), and updates ship as binary deltas where that is much smaller.
 *
 * Rules:
 * 1. Receive once. When the rollout engine is about to release a version (the reconciler asks
 *    `readiness`), the relay makes sure the region holds that version's file artifact, verified against
 *    the sha256 and size in git, plus deltas to it from the other versions of the App it holds. Until
 *    then the rollout releases nobody and says why; an artifact that fails verification is never
 *    stored, so never served.
 * 2. Relay. The desired state a device gets says `relay`: the agent downloads from the region with its
 *    device token. Origin URLs stay in git; origin credentials stay in the region.
 * 3. Throttle. All downloads together stay under `--relay-rate` bytes/s, at most `--relay-concurrency`
 *    at once; the others wait their turn (they are not refused: a refusal would count as a failed update).
 * 4. Deltas. A device that reports running a version whose artifact the region holds is offered the
 *    delta from it when the delta is at most `deltaShare` of the full artifact.
 * 5. Never drop what a running rollout needs: artifacts of rollouts that are not Complete are pinned.
 */
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { FileArtifact } from '../../core/app-spec.js';
import type { ArtifactUrlPolicy } from '../../core/artifact-url.js';
import { isTemporary } from '../../core/errors.js';
import type { DeviceId } from '../../core/types.js';
import type { ArtifactRelayStatus, RelayedArtifactStatus } from '../../protocol/region-status.js';
import type { DeploymentRolloutStatus } from '../../protocol/rollout-status.js';
import { DELTA_FORMAT, type DesiredAppWire } from '../../protocol/types.js';
import type { StateStore } from '../../reconciler/state-store.js';
import { ArtifactCache } from './artifact-cache.js';
import { zstdDeltaTool, type DeltaTool } from './delta-maker.js';
import { openOrigin, type OriginCredential } from './origin-fetcher.js';
import { Slots, TokenBucket } from './throttle.js';

export interface ArtifactRelayOptions {
  /** `<data>/artifacts` */
  dir: string;
  cacheLimitBytes: number;
  credentials?: readonly OriginCredential[];
  policy?: ArtifactUrlPolicy;
  /** Bytes per second for all downloads together; null = no limit. */
  rate?: number | null;
  /** Downloads served at once. */
  concurrency?: number;
  /** A delta is offered when it is at most this share of the full artifact. */
  deltaShare?: number;
  store: StateStore;
  log: Logger;
  registry?: Registry;
  /** An artifact became ready (or failed): ask for a pass, so the rollout moves on or says why. */
  onChange: () => void;
  deltaTool?: DeltaTool;
  clock?: () => number;
}

export const DEFAULT_CACHE_BYTES = 10 * 1024 ** 3;
export const DEFAULT_RELAY_CONCURRENCY = 32;
export const DEFAULT_DELTA_SHARE = 0.5;
/** Deltas made per new version: from the most recently used other versions held. */
const MAX_DELTA_BASES = 3;
const ORIGIN_ATTEMPTS = 3;
const RETRY_TEMPORARY_MS = 30_000;
const RETRY_FINAL_MS = 5 * 60_000;

interface Preparation {
  sha256: string;
  artifact: FileArtifact;
  app: string;
  version: string;
  state: 'fetching' | 'ready' | 'failed';
  message?: string;
  retryAt: number;
  received: number;
  work: Promise<void> | null;
  /** The running work waits for base artifacts: another preparation must not wait for it (two could wait for each other). */
  waitsForBases: boolean;
}

interface Figures {
  originBytes: number;
  servedBytes: number;
  deltaSavedBytes: number;
  downloads: number;
  deltas: number;
}

const zero = (): Figures => ({ originBytes: 0, servedBytes: 0, deltaSavedBytes: 0, downloads: 0, deltas: 0 });

export class ArtifactRelay {
  readonly bucket: TokenBucket | null;
  readonly slots: Slots;
  private readonly preparations = new Map<string, Preparation>();
  /** `<to>.<from>` -> size of the delta on disk; 'failed' when zstd could not make it. */
  private readonly deltas = new Map<string, number | 'failed'>();
  private readonly deltaWork = new Map<string, Promise<void>>();
  private readonly figures = new Map<string, Figures>();
  private readonly totals = { ...zero(), hits: 0, misses: 0 };
  private pinned = new Set<string>();
  private current: Array<{ app: string; version: string }> = [];
  private readonly abort = new AbortController();
  private readonly deltaTool: DeltaTool;
  private readonly clock: () => number;
  private readonly metrics: ReturnType<typeof createRelayMetrics> | null;

  private constructor(
    readonly cache: ArtifactCache,
    private readonly opts: ArtifactRelayOptions,
  ) {
    this.bucket = opts.rate ? new TokenBucket(opts.rate) : null;
    this.slots = new Slots(opts.concurrency ?? DEFAULT_RELAY_CONCURRENCY);
    this.deltaTool = opts.deltaTool ?? zstdDeltaTool();
    this.clock = opts.clock ?? Date.now;
    this.metrics = opts.registry ? createRelayMetrics(opts.registry, this) : null;
  }

  static async open(opts: ArtifactRelayOptions): Promise<ArtifactRelay> {
    const cache = await ArtifactCache.open(opts.dir, opts.cacheLimitBytes, opts.log);
    const relay = new ArtifactRelay(cache, opts);
    await relay.loadDeltas();
    return relay;
  }

  get deltaShare(): number {
    return this.opts.deltaShare ?? DEFAULT_DELTA_SHARE;
  }

  /** Deltas kept from an earlier run; those whose ends are gone are dropped by the cache. */
  private async loadDeltas(): Promise<void> {
    const dir = join(this.cache.dir, 'deltas');
    for (const name of await readdir(dir)) {
      const match = /^([0-9a-f]{64})\.([0-9a-f]{64})\.zst$/.exec(name);
      if (!match || !this.cache.has(match[1]!) || !this.cache.has(match[2]!)) {
        await rm(join(dir, name), { force: true });
        continue;
      }
      this.deltas.set(`${match[1]}.${match[2]}`, (await stat(join(dir, name))).size);
    }
  }

  /** Whether the version has a file artifact the relay serves (cheap: one catalog look-up). */
  relays(app: string, version: string): boolean {
    return this.artifactOf(app, version) !== null;
  }

  /** The file artifact of an App version in the applied revision, or null (none, or an image). */
  private artifactOf(app: string, version: string): FileArtifact | null {
    const artifact = this.opts.store.getCatalog()[app]?.artifacts?.[version];
    if (!artifact || !('url' in artifact)) return null;
    return { url: artifact.url, sha256: artifact.sha256.toLowerCase(), size: artifact.size };
  }

  /**
   * For the reconciler, before it releases devices to `version` of `app`: null when they may go (the
   * region holds the verified artifact and its deltas, or the version has no file artifact), else why
   * not. Starts the preparation when it has not started. `from`: versions the devices about to get it
   * run; the region fetches their artifacts too (once each), to make deltas from them.
   */
  readiness(app: string, version: string, from: readonly string[] = []): string | null {
    const artifact = this.artifactOf(app, version);
    if (!artifact) return null;
    const prep = this.prepare(app, version, artifact, from);
    if (prep.state === 'ready') return null;
    const name = `${app} ${version} (sha256 ${artifact.sha256.slice(0, 12)}…)`;
    if (prep.state === 'failed') return `the region could not get artifact ${name}: ${prep.message}; retrying at ${new Date(prep.retryAt).toISOString()}`;
    const share = artifact.size > 0 ? ` ${Math.floor((prep.received / artifact.size) * 100)}%` : '';
    return `the region is fetching artifact ${name} from its origin${share}`;
  }

  private prepare(app: string, version: string, artifact: FileArtifact, from: readonly string[] = []): Preparation {
    let prep = this.preparations.get(artifact.sha256);
    if (prep?.work) return prep;
    if (prep?.state === 'ready' && this.cache.has(artifact.sha256)) return prep;
    if (prep?.state === 'failed' && this.clock() < prep.retryAt) return prep;
    // New, failed long enough ago, or ready but since evicted or removed as tampered: (re)fetch.
    prep ??= { sha256: artifact.sha256, artifact, app, version, state: 'fetching', retryAt: 0, received: 0, work: null, waitsForBases: false };
    prep.state = 'fetching';
    prep.waitsForBases = from.length > 0;
    prep.artifact = artifact;
    this.preparations.set(artifact.sha256, prep);
    const started = prep;
    started.work = this.runPreparation(started, from).finally(() => {
      started.work = null;
      if (!this.abort.signal.aborted) this.opts.onChange();
    });
    return prep;
  }

  private async runPreparation(prep: Preparation, from: readonly string[]): Promise<void> {
    const { log } = this.opts;
    try {
      await this.fetchOnce(prep);
      await this.fetchBases(prep, from);
      const bases = await this.makeDeltasTo(prep, from);
      prep.state = 'ready';
      prep.message = undefined;
      await this.evict(prep.sha256, bases);
    } catch (err) {
      if (this.abort.signal.aborted) return;
      prep.state = 'failed';
      prep.message = err instanceof Error ? err.message : String(err);
      prep.retryAt = this.clock() + (isTemporary(err) ? RETRY_TEMPORARY_MS : RETRY_FINAL_MS);
      log.error({ app: prep.app, version: prep.version, sha256: prep.sha256, err: prep.message }, `artifact ${prep.app} ${prep.version} not relayed: ${prep.message}`);
    }
  }

  /** The verified artifact in the cache: from the cache when it is there and intact, else from its origin. */
  private async fetchOnce(prep: Preparation): Promise<void> {
    if (this.cache.has(prep.sha256) && (await this.cache.verify(prep.sha256))) return;
    let delay = 1000;
    for (let attempt = 1; ; attempt++) {
      prep.received = 0;
      try {
        const body = await openOrigin(prep.artifact.url, {
          policy: this.opts.policy ?? {},
          credentials: this.opts.credentials ?? [],
          signal: this.abort.signal,
          maxBytes: prep.artifact.size,
        });
        try {
          await this.cache.ingest(prep.artifact, body, (n) => {
            prep.received += n;
            this.figuresOf(prep.sha256).originBytes += n;
            this.totals.originBytes += n;
            this.metrics?.originBytes.inc(n);
          });
        } finally {
          body.destroy();
        }
        this.opts.log.info({ app: prep.app, version: prep.version, sha256: prep.sha256, bytes: prep.artifact.size }, `artifact ${prep.app} ${prep.version} fetched from its origin and verified`);
        return;
      } catch (err) {
        if (!isTemporary(err) || attempt >= ORIGIN_ATTEMPTS || this.abort.signal.aborted) throw err;
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay *= 2;
      }
    }
  }

  /**
   * The artifacts of the versions devices run now, so deltas can be made from them: each fetched once
   * like any other. A base that cannot be had only means whole downloads, never a waiting rollout.
   */
  private async fetchBases(prep: Preparation, from: readonly string[]): Promise<void> {
    if (from.length === 0 || !(await this.deltaTool.available())) return;
    for (const version of from.slice(0, MAX_DELTA_BASES)) {
      const base = this.artifactOf(prep.app, version);
      if (!base || base.sha256 === prep.sha256 || base.size === 0) continue;
      const running = this.preparations.get(base.sha256);
      if (running?.work && running.waitsForBases) continue; // it may be waiting for us; its delta comes later
      const basePrep = this.prepare(prep.app, version, base);
      await basePrep.work;
      if (basePrep.state === 'failed') this.opts.log.warn({ app: prep.app, version, err: basePrep.message }, `no delta from ${prep.app} ${version}: its artifact could not be fetched`);
      // Used now: the most recently used bases are the ones deltas are made from.
      this.cache.touch(base.sha256);
    }
  }

  /**
   * Deltas to `prep` from the versions its devices run (`from`), or, when none is known, from the most
   * recently used other versions of its App the cache holds. Returns the bases used.
   */
  private async makeDeltasTo(prep: Preparation, from: readonly string[]): Promise<string[]> {
    if (!(await this.deltaTool.available())) return [];
    const bases = new Set<string>();
    for (const version of from) {
      const artifact = this.artifactOf(prep.app, version);
      if (artifact && artifact.sha256 !== prep.sha256 && this.cache.has(artifact.sha256)) bases.add(artifact.sha256);
    }
    if (bases.size === 0) {
      for (const artifact of Object.values(this.opts.store.getCatalog()[prep.app]?.artifacts ?? {})) {
        if (!('url' in artifact)) continue;
        const sha = artifact.sha256.toLowerCase();
        if (sha !== prep.sha256 && this.cache.has(sha)) bases.add(sha);
      }
    }
    const chosen = [...bases].sort((a, b) => (this.cache.entry(b)?.lastUsed ?? 0) - (this.cache.entry(a)?.lastUsed ?? 0)).slice(0, MAX_DELTA_BASES);
    for (const base of chosen) await this.makeDelta(prep.sha256, base);
    return chosen;
  }

  /** Makes the delta `from` -> `to` once; a failure is remembered and the pair served whole. */
  private makeDelta(to: string, from: string): Promise<void> {
    const key = `${to}.${from}`;
    if (this.deltas.has(key)) return Promise.resolve();
    let work = this.deltaWork.get(key);
    if (!work) {
      work = (async () => {
        try {
          if (!(await this.cache.verify(from)) || !(await this.cache.verify(to))) return;
          const size = await this.deltaTool.make(this.cache.path(from), this.cache.path(to), this.cache.deltaPath(to, from), this.cache.tempPath());
          this.deltas.set(key, size);
          this.opts.log.info({ from, to, bytes: size }, `delta ${from.slice(0, 12)}… -> ${to.slice(0, 12)}…: ${size} bytes`);
        } catch (err) {
          this.deltas.set(key, 'failed');
          this.opts.log.warn({ from, to, err: (err as Error).message }, 'could not make a delta; devices get the whole artifact');
        }
      })().finally(() => this.deltaWork.delete(key));
      this.deltaWork.set(key, work);
    }
    return work;
  }

  /** After each pass: the artifacts of rollouts that are not Complete are pinned, with their deltas' bases. */
  pin(rollouts: readonly DeploymentRolloutStatus[]): void {
    const pinned = new Set<string>();
    this.current = [];
    for (const rollout of rollouts) {
      const artifact = this.artifactOf(rollout.app, rollout.version);
      if (!artifact) continue;
      this.current.push({ app: rollout.app, version: rollout.version });
      if (rollout.state === 'Complete') continue;
      pinned.add(artifact.sha256);
      for (const key of this.deltas.keys()) if (key.startsWith(`${artifact.sha256}.`)) pinned.add(key.slice(65));
    }
    this.pinned = pinned;
  }

  /** Evicts beyond the cache's limit; never the pinned artifacts, `sha` (just prepared) or the bases of its deltas. */
  private async evict(sha: string, bases: readonly string[]): Promise<void> {
    const keep = new Set([...this.pinned, sha, ...bases]);
    const evicted = await this.cache.evict(keep);
    for (const gone of evicted) {
      for (const key of [...this.deltas.keys()]) if (key.includes(gone)) this.deltas.delete(key);
    }
  }

  /**
   * Adds `relay` to a version's desired state when it has a file artifact, and the delta from the
   * version the device reports running when the region has one small enough.
   */
  decorate(device: DeviceId, app: string, wire: DesiredAppWire): void {
    const artifact = wire.artifact;
    if (!artifact || !('url' in artifact)) return;
    const to = artifact.sha256.toLowerCase();
    wire.relay = {};
    const running = this.opts.store.getDevice(device)?.apps[app]?.version;
    if (!running || running === wire.version) return;
    const base = this.artifactOf(app, running);
    if (!base || base.sha256 === to) return;
    const size = this.deltas.get(`${to}.${base.sha256}`);
    if (typeof size === 'number') {
      if (size <= this.deltaShare * artifact.size) wire.relay.delta = { from: base.sha256, size, format: DELTA_FORMAT };
    } else if (size === undefined && this.cache.has(to) && this.cache.has(base.sha256)) {
      // A pair nobody prepared (the device runs an older version): made now, offered to the next devices.
      void this.makeDelta(to, base.sha256);
    }
  }

  /** May this device read this artifact? Only one it was handed, or one it runs (a delta's base). */
  mayRead(device: DeviceId, sha: string): boolean {
    const catalog = this.opts.store.getCatalog();
    const versions = new Map<string, Set<string>>();
    const add = (app: string, version: string | null | undefined) => {
      if (version) (versions.get(app) ?? versions.set(app, new Set()).get(app)!).add(version);
    };
    for (const [app, desired] of Object.entries(this.opts.store.getHanded(device)?.apps ?? {})) add(app, desired.version);
    for (const [app, report] of Object.entries(this.opts.store.getDevice(device)?.apps ?? {})) add(app, report.version);
    for (const [app, set] of versions) {
      for (const version of set) {
        const artifact = catalog[app]?.artifacts?.[version];
        if (artifact && 'url' in artifact && artifact.sha256.toLowerCase() === sha) return true;
      }
    }
    return false;
  }

  /**
   * The artifact, verified, in the cache: 'hit' when it was there, 'miss' when it had to be fetched now,
   * null when the region cannot serve it (unknown to the applied revision, or its origin failed).
   */
  async ensure(sha: string): Promise<'hit' | 'miss' | null> {
    if (this.cache.has(sha) && (await this.cache.verify(sha))) {
      this.count('hits');
      this.cache.touch(sha);
      return 'hit';
    }
    this.count('misses');
    for (const [app, spec] of Object.entries(this.opts.store.getCatalog())) {
      for (const [version, artifact] of Object.entries(spec.artifacts ?? {})) {
        if (!('url' in artifact) || artifact.sha256.toLowerCase() !== sha) continue;
        const prep = this.prepare(app, version, this.artifactOf(app, version)!);
        await prep.work;
        return this.cache.has(sha) ? 'miss' : null;
      }
    }
    return null;
  }

  deltaSize(to: string, from: string): number | null {
    const size = this.deltas.get(`${to}.${from}`);
    return typeof size === 'number' ? size : null;
  }

  /** A file served whole failed its hash on the way out: it was changed on disk. */
  async tampered(sha: string, actual: string): Promise<void> {
    await this.cache.remove(sha, `it hashed to ${actual} while being served`);
    for (const key of [...this.deltas.keys()]) if (key.includes(sha)) this.deltas.delete(key);
    this.preparations.delete(sha);
    this.opts.onChange();
  }

  /** Counts bytes sent to devices: of the artifact `sha`, whole or as the delta to it. */
  served(sha: string, bytes: number, kind: 'full' | 'delta'): void {
    this.figuresOf(sha).servedBytes += bytes;
    this.totals.servedBytes += bytes;
    this.metrics?.servedBytes.inc({ kind }, bytes);
  }

  /** A download finished: whole, or as a delta that saved `saved` bytes. */
  completed(sha: string, kind: 'full' | 'delta', saved = 0): void {
    const figures = this.figuresOf(sha);
    figures.downloads++;
    if (kind === 'delta') {
      figures.deltas++;
      figures.deltaSavedBytes += saved;
      this.totals.deltaSavedBytes += saved;
      this.metrics?.deltaSavedBytes.inc(saved);
    }
  }

  private count(what: 'hits' | 'misses'): void {
    this.totals[what]++;
    (what === 'hits' ? this.metrics?.hits : this.metrics?.misses)?.inc();
  }

  private figuresOf(sha: string): Figures {
    let figures = this.figures.get(sha);
    if (!figures) this.figures.set(sha, (figures = zero()));
    return figures;
  }

  /** The rollouts with their artifact's figures (`artifact`), for the status API, the hub and the dashboard. */
  annotate(rollouts: DeploymentRolloutStatus[]): DeploymentRolloutStatus[] {
    return rollouts.map((rollout) => {
      const artifact = this.artifactOf(rollout.app, rollout.version);
      if (!artifact) return rollout;
      const { originBytes, servedBytes, deltaSavedBytes, downloads, deltas } = this.figuresOf(artifact.sha256);
      return { ...rollout, artifact: { size: artifact.size, originBytes, servedBytes, deltaSavedBytes, downloads, deltas } };
    });
  }

  status(): ArtifactRelayStatus {
    const artifacts: RelayedArtifactStatus[] = [];
    const seen = new Set<string>();
    for (const { app, version } of this.current) {
      const artifact = this.artifactOf(app, version);
      if (!artifact || seen.has(`${app}\0${version}`)) continue;
      seen.add(`${app}\0${version}`);
      const prep = this.preparations.get(artifact.sha256);
      const state = prep?.state ?? (this.cache.has(artifact.sha256) ? 'ready' : 'fetching');
      const entry: RelayedArtifactStatus = { app, version, sha256: artifact.sha256, size: artifact.size, state, ...this.figuresOf(artifact.sha256) };
      if (prep?.message && state !== 'ready') entry.message = prep.message;
      artifacts.push(entry);
    }
    return {
      cacheBytes: this.cache.totalBytes,
      cacheLimitBytes: this.cache.limitBytes,
      cachedArtifacts: this.cache.count,
      originBytes: this.totals.originBytes,
      servedBytes: this.totals.servedBytes,
      deltaSavedBytes: this.totals.deltaSavedBytes,
      cacheHits: this.totals.hits,
      cacheMisses: this.totals.misses,
      artifacts,
    };
  }

  /** Stops fetches and waits for them to let go of their files. */
  async close(): Promise<void> {
    this.abort.abort();
    await Promise.allSettled([...this.preparations.values()].map((p) => p.work));
    await Promise.allSettled([...this.deltaWork.values()]);
  }
}

function createRelayMetrics(registry: Registry, relay: ArtifactRelay) {
  new Gauge({
    name: 'cascade_relay_cache_bytes',
    help: 'Bytes of artifacts in the region cache',
    registers: [registry],
    collect() {
      this.set(relay.cache.totalBytes);
    },
  });
  return {
    originBytes: new Counter({ name: 'cascade_relay_origin_bytes_total', help: 'Artifact bytes fetched from origins', registers: [registry] }),
    servedBytes: new Counter({ name: 'cascade_relay_served_bytes_total', help: 'Artifact bytes sent to devices, whole files or deltas', labelNames: ['kind'], registers: [registry] }),
    deltaSavedBytes: new Counter({ name: 'cascade_relay_delta_saved_bytes_total', help: 'Bytes devices did not download because they got a delta', registers: [registry] }),
    hits: new Counter({ name: 'cascade_relay_cache_hits_total', help: 'Device downloads served from the cache', registers: [registry] }),
    misses: new Counter({ name: 'cascade_relay_cache_misses_total', help: 'Device downloads that had to wait for the origin', registers: [registry] }),
  };
}
