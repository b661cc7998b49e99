import cliProgress from 'cli-progress';
import { CascadeError, isTemporary } from '../../core/errors.js';
import type { RegionStatus } from '../../protocol/region-status.js';
import type { RevisionView } from '../../hub/views.js';
import { describeHalt, sumWaves } from '../../plan/rollout/totals.js';
import { fetchRecentRevisions, fetchRevision, type HubReadOptions } from '../hub/fetch-fleet.js';
import { fetchRegionStatus } from './fetch-status.js';
import { regionVerdict, revisionStateVerdict, type WatchUntil, type WatchVerdict } from './watch-verdict.js';

export interface WatchOptions {
  intervalMs: number;
  until: WatchUntil;
  /** Follow this commit (id or prefix) rather than whatever moves next. */
  revision?: string;
  /** Give up (exit 2) after this long; no limit when absent. */
  timeoutMs?: number;
  /** One JSON object per change on `stdout` instead of progress bars. */
  json: boolean;
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WriteStream;
  clock?: () => number;
}

/** How long a watch rides out an unreachable region or hub before it gives up. */
const UNREACHABLE_GRACE_MS = 30_000;

/**
 * Polls until `read` gives a verdict. Temporary failures (a restarting region) are ridden out for a
 * while; `timeoutMs` bounds the whole watch. `onSnapshot` sees every snapshot, `onChange` only those
 * whose JSON differs from the last one.
 */
async function pollUntil<T>(
  what: string,
  read: () => Promise<T>,
  verdictOf: (snapshot: T) => WatchVerdict | null,
  opts: WatchOptions,
  onSnapshot: (snapshot: T) => void,
): Promise<{ snapshot: T; verdict: WatchVerdict }> {
  const clock = opts.clock ?? Date.now;
  const deadline = opts.timeoutMs === undefined ? Infinity : clock() + opts.timeoutMs;
  let failingSince: number | null = null;
  let last = '';
  for (;;) {
    let snapshot: T | undefined;
    try {
      snapshot = await read();
      failingSince = null;
    } catch (err) {
      if (!isTemporary(err)) throw err;
      failingSince ??= clock();
      if (clock() - failingSince > UNREACHABLE_GRACE_MS) throw err;
    }
    if (snapshot !== undefined) {
      const json = JSON.stringify(snapshot);
      if (json !== last) {
        last = json;
        if (opts.json) (opts.stdout ?? process.stdout).write(json + '\n');
      }
      onSnapshot(snapshot);
      const verdict = verdictOf(snapshot);
      if (verdict) return { snapshot, verdict };
    }
    if (clock() >= deadline) {
      throw new CascadeError('watch-timeout', `gave up after ${Math.round((opts.timeoutMs ?? 0) / 1000)} s waiting for ${what}; raise --timeout, or look at \`cascade status\``);
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(opts.intervalMs, Math.max(0, deadline - clock()))));
  }
}

/**
 * `cascade status --watch --region-url`: one progress bar for the region's devices and one per
 * Deployment's rollout (healthy devices at the new version), until the verdict of watch-verdict.ts.
 */
export async function watchRegionStatus(regionUrl: string, opts: WatchOptions): Promise<{ status: RegionStatus; verdict: WatchVerdict }> {
  const bars = opts.json ? null : progressBars(opts.stderr ?? process.stderr);
  let first: RegionStatus | null = null;
  try {
    const { snapshot, verdict } = await pollUntil(
      opts.revision ? `revision ${opts.revision} to settle` : 'the next rollout to settle',
      () => fetchRegionStatus(regionUrl),
      (status) => regionVerdict(status, { until: opts.until, revision: opts.revision, first: (first ??= status) }),
      opts,
      (status) => {
        if (!bars) return;
        const d = status.devices;
        bars.draw(`region ${status.region}`, d.converged, d.total, `converged  ${d.updating} updating  ${d.pending ?? 0} pending  ${d.failed} failed  ${d.offline} offline  rev ${(status.revision.applied ?? '-').slice(0, 8)}`);
        for (const rollout of status.rollouts ?? []) {
          const { devices: total, healthy, failed } = sumWaves(rollout.waves);
          const halt = rollout.halted ? `  HALTED ${describeHalt(rollout)}` : '';
          bars.draw(rollout.deployment, healthy, total, `at ${rollout.version}  ${rollout.state}  wave ${rollout.currentWave}/${rollout.waves.length}  ${failed} failed${halt}`);
        }
      },
    );
    return { status: snapshot, verdict };
  } finally {
    bars?.stop();
  }
}

/**
 * `cascade status --watch --hub-url`: one commit across the fleet (`--revision`), or the newest commit
 * the hub hears of after the watch starts, until the hub calls it Complete, Halted or Refused.
 */
export async function watchHubRevision(read: HubReadOptions, opts: WatchOptions): Promise<{ view: RevisionView; verdict: WatchVerdict }> {
  const out = opts.stderr ?? process.stderr;
  let baseline: RevisionView | null | undefined;
  let shown = '';
  const readView = async (): Promise<RevisionView | null> => {
    if (opts.revision) {
      try {
        return await fetchRevision(read, opts.revision);
      } catch (err) {
        // Not seen by any region yet: keep waiting.
        if (err instanceof CascadeError && err.code === 'hub-error' && /\b404\b/.test(err.message)) return null;
        throw err;
      }
    }
    const [newest] = await fetchRecentRevisions(read, 1);
    return newest ?? null;
  };
  const { snapshot, verdict } = await pollUntil(
    opts.revision ? `revision ${opts.revision} across the fleet` : 'the next commit across the fleet',
    readView,
    (view) => {
      if (baseline === undefined) baseline = view;
      if (!view) return null;
      // Without --revision, a commit that had already settled when the watch began is not the one awaited.
      if (!opts.revision && baseline && view.revision === baseline.revision && baseline.state !== 'Progressing' && view.state === baseline.state) return null;
      return revisionStateVerdict(view.state, opts.until, view.revision);
    },
    opts,
    (view) => {
      if (opts.json || !view) return;
      const line = `${view.revision.slice(0, 8)} ${view.state}: ${view.regions.map((r) => `${r.region} ${r.refused ? 'refused' : r.applied ? 'applied' : 'pending'}`).join(', ')}`;
      if (line !== shown) out.write(line + '\n');
      shown = line;
    },
  );
  return { view: snapshot!, verdict };
}

function progressBars(stream: NodeJS.WriteStream) {
  const bars = new cliProgress.MultiBar(
    {
      format: ' {name} |{bar}| {value}/{total} {label}',
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      noTTYOutput: true,
      notTTYSchedule: 2000,
      stream,
    },
    cliProgress.Presets.shades_classic,
  );
  const byName = new Map<string, cliProgress.SingleBar>();
  return {
    draw(name: string, value: number, total: number, label: string) {
      let bar = byName.get(name);
      if (!bar) {
        bar = bars.create(Math.max(total, 1), value, { name: name.padEnd(24), label });
        byName.set(name, bar);
      }
      bar.setTotal(Math.max(total, 1));
      bar.update(value, { name: name.padEnd(24), label });
    },
    stop: () => bars.stop(),
  };
}
