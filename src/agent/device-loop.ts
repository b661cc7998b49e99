import type { Logger } from 'pino';
import { isCascadeError } from '../core/errors.js';
import type { AppReport, Labels } from '../core/types.js';
import { isRegionHttpError, type DesiredResult, type RegionClient } from './http/region-client.js';
import { isValidVersion, VERSION_GRAMMAR_TEXT } from '../core/version.js';
import { errorCodes, MAX_REPORT_SEQ, type DesiredAppWire, type ReportRequest } from '../protocol/types.js';
import { sleep } from './abortable.js';
import { AGENT_STATE_WRITE_FAILED, type AgentState, type AgentStateStore, type InstalledApp } from './agent-state.js';
import { AppApplyError } from './apply-error.js';
import type { AppTarget, DeviceRuntime } from './runtime.js';
import type { DeviceKey } from './device-key.js';

export type DeviceEvent =
  | { type: 'enrolled' }
  | { type: 'reported' }
  | { type: 'desired'; generation: number }
  | { type: 'apply-started'; app: string; version: string; from: string | null }
  | { type: 'applied'; app: string; version: string; from: string | null }
  | { type: 'apply-failed'; app: string; version: string; running: string | null; message: string }
  | { type: 'removed'; app: string; version: string }
  | { type: 'drift'; app: string; version: string; reason: string; repaired: boolean }
  /** A request failed; `kind` names the failure for tallies: `http <status> <code>`, or the error code and its cause (`region-unreachable ECONNRESET`). */
  | { type: 'connection-error'; message: string; kind: string }
  /** The region asked the device to slow down (429 or 503 with Retry-After): it waits as asked, then tries again. Not a failure. */
  | { type: 'throttled'; status: number; retryInMs: number };

/** How an enrolled device reports and learns its desired state: the HTTP client, or e.g. MQTT. */
export interface DeviceChannel {
  report(body: ReportRequest, signal?: AbortSignal): Promise<void>;
  /** 200 with the desired state once it differs from `etag`, or 304 after `waitSeconds`. */
  getDesired(etag: string | null, waitSeconds: number, signal?: AbortSignal): Promise<DesiredResult>;
}

export interface DeviceLoopOptions {
  /** Knows the region URL and the device id; keeps the device token. */
  client: RegionClient;
  /** Carries reports and desired state after enrolment; `client` (HTTP long polls) by default. */
  channel?: DeviceChannel;
  labels: Labels;
  enrollmentToken: string | null;
  runtime: DeviceRuntime;
  state: AgentStateStore;
  log: Logger;
  /** How long each long poll for desired state may be held by the region. */
  waitSeconds?: number;
  /** Reconnect delays: doubled per failure from initialMs up to maxMs, with jitter. */
  backoff?: { initialMs?: number; maxMs?: number };
  random?: () => number;
  onEvent?: (event: DeviceEvent) => void;
  /** How often to look for drift (a container stopped or removed by hand), if the runtime can tell; 30 s by default. */
  driftCheckMs?: number;
  /** The device key (device-key.ts): enrolments carry it, and a refused token is renewed with it. */
  key?: DeviceKey;
}

const MESSAGE_LIMIT = 1000;
/** The longest run of quiet polls (30 s each by default: 16 minutes) between reports of a device the region has handed nothing yet. */
const MAX_QUIET_POLLS = 32;

/** Region answers that no retry can fix: the loop stops with them. */
const FATAL_CODES = new Set<string>([errorCodes.enrollmentTokenInvalid, 'device-revoked', errorCodes.deviceIdInvalid, errorCodes.labelsInvalid, errorCodes.deviceKeyRequired]);

function truncate(text: string): string {
  return text.length > MESSAGE_LIMIT ? `${text.slice(0, MESSAGE_LIMIT - 3)}...` : text;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A short name of a failure, for tallies: `http 503 region-busy`, `region-unreachable ECONNRESET`, `region-timeout`. */
export function errorKind(err: unknown): string {
  if (isRegionHttpError(err)) return `http ${err.status} ${err.code}`;
  if (isCascadeError(err)) {
    const cause = err.details?.['cause'];
    return typeof cause === 'string' ? `${err.code} ${cause}` : err.code;
  }
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : err instanceof Error ? err.name : 'unknown';
}

/**
 * The device agent's loop: enrol once, report, long-poll the desired state, apply each changed app
 * through the runtime (going back to the previous version when the new one fails), report, repeat;
 * reconnect with backoff while the region is unreachable. Resolves when `signal` aborts; rejects
 * only on errors no retry can fix (a wrong enrollment token, a revoked device).
 */
export async function runDeviceLoop(opts: DeviceLoopOptions, signal: AbortSignal): Promise<void> {
  const loop = new DeviceLoop(opts, signal);
  await loop.run();
}

class DeviceLoop {
  private state: AgentState;
  private readonly log: Logger;
  private readonly waitSeconds: number;
  private readonly random: () => number;
  /** Apps whose running version drifted, with what was found and done; reported until the app changes. */
  private readonly drifted = new Map<string, { message: string; repaired: boolean }>();
  private lastDriftCheck = -Infinity;
  /** Versions replaced by a healthy one, whose files or images are dropped once the region has heard. */
  private readonly toDiscard: Array<{ app: string; installed: InstalledApp }> = [];

  constructor(
    private readonly opts: DeviceLoopOptions,
    private readonly signal: AbortSignal,
  ) {
    this.state = opts.state.load();
    this.log = opts.log.child({ deviceId: opts.client.deviceId });
    this.waitSeconds = opts.waitSeconds ?? 30;
    this.random = opts.random ?? Math.random;
    const client = opts.client;
    if (this.state.token && this.state.deviceId === client.deviceId && this.state.regionUrl === client.regionUrl) {
      client.setToken(this.state.token);
    } else {
      client.setToken(null);
    }
  }

  async run(): Promise<void> {
    const client = this.opts.client;
    let etag: string | null = null;
    let mustReport = true;
    let failures = 0;
    // Over a channel (MQTT) the broker acknowledges a report, not the region: a report lost between
    // them (a bridge, a region reconnecting) would leave the region waiting for this device's first
    // report forever, and the device waiting for a desired state. Until the region hands it something,
    // each run of quiet polls makes it report again, the runs doubling (1, 2, 4, ... up to
    // MAX_QUIET_POLLS), so a device the region simply has nothing for costs a few reports an hour.
    let handedAnything = false;
    let quietPolls = 0;
    let quietLimit = 1;
    while (!this.signal.aborted) {
      try {
        if (client.token === null) {
          await this.enroll();
          mustReport = true;
          etag = null;
        }
        if (mustReport) {
          await this.report();
          mustReport = false;
        }
        const result = await (this.opts.channel ?? client).getDesired(etag, this.waitSeconds, this.signal);
        failures = 0;
        if (result.status === 304) {
          if (this.opts.channel && !handedAnything && ++quietPolls >= quietLimit) {
            quietPolls = 0;
            quietLimit = Math.min(quietLimit * 2, MAX_QUIET_POLLS);
            mustReport = true;
            this.log.debug('no desired state yet: reporting again, in case the region never got the report');
          }
          await this.checkDrift();
          continue;
        }
        if (result.body.generation > 0) handedAnything = true;
        this.emit({ type: 'desired', generation: result.body.generation });
        // Generation 0: the region has handed this device nothing yet, so it has no opinion about
        // what is installed. Any later state is complete: apps missing from it are removed.
        if (result.body.generation > 0) await this.apply(result.body.apps, result.body.revision);
        // Only now: if applying was interrupted, the same desired state comes again.
        etag = result.etag;
        await this.checkDrift();
      } catch (err) {
        if (this.signal.aborted) break;
        if (isRegionHttpError(err) && FATAL_CODES.has(err.code)) throw err;
        // Without its state the agent would forget what it installed: stop rather than guess.
        if (isCascadeError(err) && err.code === AGENT_STATE_WRITE_FAILED) throw err;
        if (isRegionHttpError(err) && err.code === errorCodes.deviceTokenInvalid) {
          // The region no longer knows this token (re-enrolled elsewhere, or its state was reset): enrol again.
          this.log.warn({ err: err.message }, 'device token refused; enrolling again');
          client.setToken(null);
        }
        mustReport = true;
        let delay: number;
        if (isRegionHttpError(err) && (err.status === 429 || err.status === 503) && err.retryAfterMs !== null) {
          // Told to come back later: as asked, plus jitter so a throttled burst does not come back at once.
          delay = err.retryAfterMs + Math.round(this.random() * Math.max(err.retryAfterMs / 2, 500));
          this.emit({ type: 'throttled', status: err.status, retryInMs: delay });
          this.log.info({ retryInMs: delay, status: err.status }, `the region asked to retry later: ${err.message}`);
          try {
            await sleep(delay, this.signal);
          } catch {
            break;
          }
          continue;
        }
        failures++;
        delay = this.backoffMs(failures);
        this.emit({ type: 'connection-error', message: describe(err), kind: errorKind(err) });
        if (isRegionHttpError(err) && err.code === errorCodes.enrollmentPending) {
          this.log.info({ retryInMs: delay, key: this.opts.key?.fingerprint }, `waiting for an operator to approve this device: ${err.message}`);
        } else {
          this.log.warn({ err: describe(err), retryInMs: delay }, 'region request failed; retrying');
        }
        try {
          await sleep(delay, this.signal);
        } catch {
          break;
        }
      }
    }
  }

  private backoffMs(failures: number): number {
    const initial = this.opts.backoff?.initialMs ?? 500;
    const max = this.opts.backoff?.maxMs ?? 30_000;
    const ceiling = Math.min(max, initial * 2 ** Math.min(failures - 1, 20));
    return Math.round(ceiling / 2 + (ceiling / 2) * this.random());
  }

  private async enroll(): Promise<void> {
    const client = this.opts.client;
    const answer = await this.renewOrEnroll();
    this.state.deviceId = client.deviceId;
    this.state.regionUrl = client.regionUrl;
    this.state.token = answer.token;
    this.save();
    this.log.info({ region: answer.region }, 'enrolled');
    this.emit({ type: 'enrolled' });
  }

  /**
   * A device that had a token and holds its key asks for a new token with a key proof (no enrolment
   * token needed); when the region does not know the id or it is not bound to a key (region state
   * lost, operator reset), it enrols.
   */
  private async renewOrEnroll() {
    const { client, key } = this.opts;
    if (key && this.state.token !== null && this.state.deviceId === client.deviceId && this.state.regionUrl === client.regionUrl) {
      try {
        return await client.renewToken(key, this.signal);
      } catch (err) {
        if (!isRegionHttpError(err) || err.status >= 500 || err.status === 429 || err.code === 'device-revoked') throw err;
        this.log.info({ err: err.message }, 'token renewal refused; enrolling');
      }
    }
    return client.enroll(this.opts.labels, this.opts.enrollmentToken, this.signal, key);
  }

  private reportBody(installing?: { app: string; version: string }): ReportRequest {
    const apps: Record<string, AppReport> = {};
    const names = new Set([...Object.keys(this.state.installed), ...Object.keys(this.state.failed)]);
    for (const app of names) {
      const running = this.state.installed[app]?.version ?? null;
      const failed = this.state.failed[app];
      const drift = this.drifted.get(app);
      apps[app] = failed
        ? { version: running, state: 'failed', message: truncate(`version ${failed.version}: ${failed.message}`) }
        : drift
          ? { version: running, state: drift.repaired ? 'healthy' : 'failed', message: truncate(drift.message) }
          : { version: running, state: 'healthy' };
      if (failed?.attempt) apps[app]!.attempt = failed.attempt;
    }
    if (installing) {
      apps[installing.app] = { version: this.state.installed[installing.app]?.version ?? null, state: 'installing', message: `installing ${installing.version}` };
    }
    return { apps, labels: this.opts.labels, seq: this.nextSeq() };
  }

  /** The next report sequence number, saved before the report leaves so that no later report can carry a smaller one. */
  private nextSeq(): number {
    this.state.reportSeq = Math.min(MAX_REPORT_SEQ, (this.state.reportSeq ?? 0) + 1);
    this.save();
    return this.state.reportSeq;
  }

  private async report(installing?: { app: string; version: string }): Promise<void> {
    await (this.opts.channel ?? this.opts.client).report(this.reportBody(installing), this.signal);
    this.emit({ type: 'reported' });
  }

  private save(): void {
    this.opts.state.save(this.state);
  }

  private emit(event: DeviceEvent): void {
    this.opts.onEvent?.(event);
  }

  /**
   * Puts back what was changed by hand: an installed version the runtime no longer finds running is
   * restored and health-checked, and the region hears about it. At most every driftCheckMs.
   */
  private async checkDrift(): Promise<void> {
    const runtime = this.opts.runtime;
    if (!runtime.drift) return;
    const now = Date.now();
    if (now - this.lastDriftCheck < (this.opts.driftCheckMs ?? 30_000)) return;
    this.lastDriftCheck = now;
    let changed = false;
    for (const [app, installed] of Object.entries(this.state.installed)) {
      let reason: string | null;
      try {
        reason = await runtime.drift(app, installed, this.signal);
      } catch (err) {
        if (this.signal.aborted) throw err;
        this.log.warn({ app, err: describe(err) }, 'could not look for drift');
        continue;
      }
      if (reason === null) {
        const known = this.drifted.get(app);
        if (known && !known.repaired) {
          this.drifted.delete(app);
          changed = true;
        }
        continue;
      }
      this.log.warn({ app, version: installed.version, reason }, 'drift: the installed version is not running as installed; putting it back');
      let repaired = true;
      let message = `drift at ${new Date(now).toISOString()}: ${reason}; started ${installed.version} again`;
      try {
        await runtime.restore(app, installed, null, this.signal, this.log);
        await runtime.healthCheck(app, installed, this.signal, this.log);
      } catch (err) {
        if (this.signal.aborted) throw err;
        repaired = false;
        message = `drift at ${new Date(now).toISOString()}: ${reason}; putting ${installed.version} back failed: ${describe(err)}`;
      }
      this.drifted.set(app, { message, repaired });
      this.save();
      changed = true;
      this.emit({ type: 'drift', app, version: installed.version, reason, repaired });
    }
    if (changed) await this.report();
  }

  /** Brings the device to `desired`; reports when anything changed. */
  private async apply(desired: Record<string, DesiredAppWire>, revision: string | null = null): Promise<void> {
    let changed = false;
    for (const [app, installed] of Object.entries(this.state.installed)) {
      if (desired[app]) continue;
      await this.opts.runtime.remove(app, installed, this.signal, this.log);
      this.drifted.delete(app);
      delete this.state.installed[app];
      delete this.state.failed[app];
      this.save();
      changed = true;
      this.log.info({ app, version: installed.version }, 'removed');
      this.emit({ type: 'removed', app, version: installed.version });
    }
    for (const app of Object.keys(this.state.failed)) {
      if (desired[app]) continue;
      delete this.state.failed[app];
      this.save();
      changed = true;
    }
    for (const app of Object.keys(desired).sort()) {
      const target = desired[app]!;
      const current = this.state.installed[app] ?? null;
      const failed = this.state.failed[app];
      if (current?.version === target.version) {
        if (failed) {
          // The region went back to the running version: the failure is settled.
          delete this.state.failed[app];
          this.save();
          changed = true;
        }
        continue;
      }
      // A failed version is not tried again until the region asks for another one, or for another attempt (an operator's retry).
      if (failed?.version === target.version && attemptOf(target) <= (failed.attempt ?? 0)) continue;
      await this.applyOne(app, { ...target, revision }, current);
      changed = true;
    }
    if (changed) await this.report();
    // After the report: the region hears "healthy" without waiting for the cleanup.
    for (const { app, installed } of this.toDiscard.splice(0)) {
      await this.opts.runtime.discard(app, installed).catch((err: unknown) => this.log.warn({ app, err: describe(err) }, 'could not delete the old version'));
    }
  }

  private async applyOne(app: string, target: AppTarget, current: InstalledApp | null): Promise<void> {
    const { runtime } = this.opts;
    this.drifted.delete(app);
    const from = current?.version ?? null;
    this.log.info({ app, from, to: target.version }, 'applying');
    this.emit({ type: 'apply-started', app, version: target.version, from });
    try {
      await this.report({ app, version: target.version });
    } catch (err) {
      if (this.signal.aborted) throw err;
      // Telling the region is nice to have; applying does not depend on it.
      this.log.warn({ err: describe(err) }, 'could not report installing');
    }

    let candidate: InstalledApp | null = null;
    try {
      // Checked again here (the region checks first): a version becomes file names and command values.
      if (!isValidVersion(target.version)) {
        throw new AppApplyError('version-invalid', `${app}: version ${JSON.stringify(String(target.version).slice(0, 140))} refused: a version is ${VERSION_GRAMMAR_TEXT}`, { touchedPrevious: false });
      }
      candidate = await runtime.install(app, target, current, this.signal, this.log);
      await runtime.healthCheck(app, candidate, this.signal, this.log);
    } catch (err) {
      if (this.signal.aborted) throw err;
      await this.recordFailure(app, target, current, candidate, err);
      return;
    }
    this.state.installed[app] = candidate;
    delete this.state.failed[app];
    this.save();
    if (current) this.toDiscard.push({ app, installed: current });
    this.log.info({ app, from, to: target.version }, 'applied');
    this.emit({ type: 'applied', app, version: target.version, from });
  }

  private async recordFailure(app: string, target: DesiredAppWire, current: InstalledApp | null, candidate: InstalledApp | null, err: unknown): Promise<void> {
    const applyError = err instanceof AppApplyError ? err : null;
    let message = describe(err);
    if (!isCascadeError(err)) this.log.error({ app, err }, 'unexpected error while applying');
    const touched = applyError ? applyError.touchedPrevious : true;
    if (touched) {
      try {
        await this.opts.runtime.restore(app, current, candidate ?? applyError?.partial ?? null, this.signal, this.log);
        if (current) message += `; running ${current.version} again`;
      } catch (restoreErr) {
        if (this.signal.aborted) throw restoreErr;
        message += `; going back to ${current?.version ?? 'nothing'} also failed: ${describe(restoreErr)}`;
      }
    } else if (current) {
      message += `; ${current.version} keeps running`;
    }
    this.state.failed[app] = { version: target.version, message: truncate(message) };
    if (attemptOf(target) > 0) this.state.failed[app]!.attempt = attemptOf(target);
    this.save();
    this.log.warn({ app, version: target.version, running: current?.version ?? null, reason: message }, 'apply failed');
    this.emit({ type: 'apply-failed', app, version: target.version, running: current?.version ?? null, message });
  }
}

/** The attempt a region asks for; anything but a non-negative safe integer counts as 0. */
function attemptOf(target: DesiredAppWire): number {
  const attempt = target.attempt;
  return typeof attempt === 'number' && Number.isSafeInteger(attempt) && attempt > 0 ? attempt : 0;
}
