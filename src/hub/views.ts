import { compareStrings } from '../core/text.js';
import { describeHalt, sumWaves } from '../plan/rollout/totals.js';
import type { DeploymentRolloutStatus, HaltRecord, HaltRevert, RolloutPhase, WaveStatus } from '../plan/rollout/types.js';
import type { DeviceCounts, DeviceState } from '../reconciler/region-status.js';
import type { RegionRecord } from '../storage/hub-store.js';
import type { HubSummary } from '../protocol/hub-summary.js';
import type { RolloutArtifactFigures } from '../protocol/rollout-status.js';

/**
 * Pure views over the regions' latest summaries: what the hub API, the dashboard, the webhooks
 * and `cascade status --hub-url` show. `now` is passed in; nothing here reads a clock.
 */

export type RevisionState = 'Progressing' | 'Complete' | 'Halted' | 'Refused';

export interface RegionView {
  region: string;
  /** No summary for longer than the hub's stale-after: what it shows may be out of date. */
  stale: boolean;
  /** Hub clock, epoch ms. */
  receivedAt: number;
  sequence: number;
  /** Region clock, epoch ms, when the region built the summary. */
  at: number;
  revision: HubSummary['revision'];
  source: { reachable: boolean };
  devices: DeviceCounts;
  updatesSent: number;
  rollouts: DeploymentRolloutStatus[];
  devicesListed: number;
  devicesTruncated: boolean;
}

export interface FleetView {
  at: number;
  staleAfterMs: number;
  regions: RegionView[];
}

export interface RolloutCounts {
  devices: number;
  converged: number;
  /** Enrolled, no report yet: neither offline nor attempted. Absent in views stored before it existed. */
  new?: number;
  updating: number;
  pending: number;
  failed: number;
  offline: number;
}

export interface RevisionDeploymentView {
  deployment: string;
  app: string;
  version: string;
  state: RolloutPhase;
  currentWave: number;
  rollback: boolean;
  waves: WaveStatus[];
  counts: RolloutCounts;
  halted?: HaltRecord;
  /** What the region pushed about the halt (spec.rollout.onHalt: revert | revert-branch). */
  revert?: HaltRevert;
  message?: string;
  /** Bytes of the artifact through the region's relay. */
  artifact?: RolloutArtifactFigures;
}

export interface RevisionRegionView {
  region: string;
  stale: boolean;
  /** The region's applied revision is this one, or it runs rollouts this revision started. */
  applied: boolean;
  /** The region's last attempted revision is this one. */
  attempted: boolean;
  /** The revision the region has applied now, this one or another. */
  current: string | null;
  refused: boolean;
  errors: string[] | null;
  /** Rollouts this revision started in the region. */
  deployments: RevisionDeploymentView[];
}

export interface RevisionDeploymentTotal {
  deployment: string;
  app: string;
  version: string;
  /** Summed over regions; the devices of a stale region count as offline. */
  counts: RolloutCounts;
  states: Record<string, RolloutPhase>;
}

export interface HaltedRollout {
  region: string;
  deployment: string;
  version: string;
  reason: string;
  devices: string[];
  /** The revert the region pushed (or could not), under onHalt. */
  revert?: HaltRevert;
}

export interface RevisionView {
  revision: string;
  /** The commit's first message line and author, as a region that applied or refused it read them from git. */
  subject?: string;
  author?: string;
  state: RevisionState;
  /** No region refers to this revision any more: the view is the last one the hub computed. */
  superseded: boolean;
  regions: RevisionRegionView[];
  deployments: RevisionDeploymentTotal[];
  halted: HaltedRollout[];
  /** Commands that undo the revision; set when it halted or was refused. */
  undo: { revert: string; rollbacks: string[] } | null;
  firstSeenAt?: number;
  stateChangedAt?: number;
}

/** What the dashboard page polls: `GET /api/v1/dashboard`, from the hub or a region. */
export interface DashboardOverview {
  mode: 'hub' | 'region';
  at: number;
  /** Hub only: a region silent this long is stale. */
  staleAfterMs: number | null;
  regions: RegionView[];
  /** Recent commits, newest first. */
  revisions: RevisionView[];
}

export interface DeviceRow {
  region: string;
  id: string;
  state: DeviceState;
  apps: Record<string, string>;
  /** Per failed app, the version it failed to run. */
  failed?: Record<string, string>;
  /** Pending, held by this Deployment's halted rollout. */
  heldBy?: string;
}

export interface DeviceSearch {
  /** Devices the regions report in total. */
  total: number;
  /** Listed devices that match the query (before `limit`). */
  matched: number;
  devices: DeviceRow[];
  /** Regions with more devices than their summary lists: the search does not see them all. */
  truncatedRegions: string[];
}

export function isStale(record: RegionRecord, now: number, staleAfterMs: number): boolean {
  return now - record.receivedAt > staleAfterMs;
}

export function regionView(record: RegionRecord, now: number, staleAfterMs: number): RegionView {
  const s = record.summary;
  return {
    region: s.region,
    stale: isStale(record, now, staleAfterMs),
    receivedAt: record.receivedAt,
    sequence: s.sequence,
    at: s.at,
    revision: s.revision,
    source: { reachable: s.source.reachable },
    devices: s.devices,
    updatesSent: s.updatesSent,
    rollouts: s.rollouts,
    devicesListed: s.devicesList?.length ?? 0,
    devicesTruncated: s.devicesTruncated ?? false,
  };
}

export function fleetView(records: RegionRecord[], now: number, staleAfterMs: number): FleetView {
  const regions = records.map((r) => regionView(r, now, staleAfterMs)).sort((a, b) => compareStrings(a.region, b.region));
  return { at: now, staleAfterMs, regions };
}

/** Every revision some region still refers to: applied, attempted, or the start of a rollout it runs. */
export function referencedRevisions(records: RegionRecord[]): Set<string> {
  const shas = new Set<string>();
  for (const { summary } of records) {
    if (summary.revision.applied) shas.add(summary.revision.applied);
    if (summary.revision.attempted) shas.add(summary.revision.attempted);
    for (const rollout of summary.rollouts) shas.add(rollout.revision);
  }
  return shas;
}

function emptyCounts(): RolloutCounts {
  return { devices: 0, converged: 0, new: 0, updating: 0, pending: 0, failed: 0, offline: 0 };
}

export function rolloutCounts(waves: WaveStatus[]): RolloutCounts {
  const total = sumWaves(waves);
  return { devices: total.devices, converged: total.healthy, new: total.new, updating: total.updating, pending: total.pending, failed: total.failed, offline: total.offline };
}

function isRefused(summary: HubSummary, sha: string): boolean {
  return summary.revision.attempted === sha && summary.revision.error !== null && summary.revision.error.length > 0;
}

/**
 * One commit across the fleet. Its state: Refused when a region refused it; else Halted when one of
 * its rollouts halted anywhere; else Complete when at least one region applied it and every region
 * that did completed all the rollouts it started; else Progressing.
 */
export function revisionView(sha: string, records: RegionRecord[], now: number, staleAfterMs: number): RevisionView {
  const regions: RevisionRegionView[] = [];
  const totals = new Map<string, RevisionDeploymentTotal>();
  const halted: HaltedRollout[] = [];
  let refused = false;
  let applying = 0;
  let allComplete = true;
  let commit: { subject: string; author: string } | undefined;

  const sorted = [...records].sort((a, b) => compareStrings(a.summary.region, b.summary.region));
  for (const record of sorted) {
    const s = record.summary;
    const stale = isStale(record, now, staleAfterMs);
    const own = s.rollouts.filter((r) => r.revision === sha);
    const regionRefused = isRefused(s, sha);
    const applied = s.revision.applied === sha || own.length > 0;
    refused ||= regionRefused;
    if (!commit && s.revision.applied === sha && s.revision.subject !== undefined) commit = { subject: s.revision.subject, author: s.revision.author ?? '' };
    if (!commit && regionRefused && s.revision.refused) commit = s.revision.refused;
    if (applied) applying++;

    const deployments: RevisionDeploymentView[] = own
      .map((r) => {
        const view: RevisionDeploymentView = {
          deployment: r.deployment,
          app: r.app,
          version: r.version,
          state: r.state,
          currentWave: r.currentWave,
          rollback: r.rollback ?? false,
          waves: r.waves,
          counts: rolloutCounts(r.waves),
        };
        if (r.halted) view.halted = r.halted;
        if (r.revert) view.revert = r.revert;
        if (r.message) view.message = r.message;
        if (r.artifact) view.artifact = r.artifact;
        return view;
      })
      .sort((a, b) => compareStrings(a.deployment, b.deployment));

    for (const d of deployments) {
      if (d.state !== 'Complete') allComplete = false;
      if (d.state === 'Halted') {
        halted.push({
          region: s.region,
          deployment: d.deployment,
          version: d.version,
          reason: describeHalt(d) ?? d.message ?? 'halted',
          devices: d.halted?.devices ?? [],
          ...(d.revert ? { revert: d.revert } : {}),
        });
      }
      const key = `${d.deployment}\u0000${d.version}`;
      let total = totals.get(key);
      if (!total) {
        total = { deployment: d.deployment, app: d.app, version: d.version, counts: emptyCounts(), states: {} };
        totals.set(key, total);
      }
      total.states[s.region] = d.state;
      total.counts.devices += d.counts.devices;
      if (stale) total.counts.offline += d.counts.devices;
      else {
        total.counts.converged += d.counts.converged;
        total.counts.new = (total.counts.new ?? 0) + (d.counts.new ?? 0);
        total.counts.updating += d.counts.updating;
        total.counts.pending += d.counts.pending;
        total.counts.failed += d.counts.failed;
        total.counts.offline += d.counts.offline;
      }
    }

    regions.push({
      region: s.region,
      stale,
      applied,
      attempted: s.revision.attempted === sha,
      current: s.revision.applied,
      refused: regionRefused,
      errors: regionRefused ? s.revision.error : null,
      deployments,
    });
  }

  const state: RevisionState = refused ? 'Refused' : halted.length > 0 ? 'Halted' : applying > 0 && allComplete ? 'Complete' : 'Progressing';
  const undo =
    state === 'Halted' || state === 'Refused'
      ? { revert: `git revert ${sha}`, rollbacks: [...new Set(halted.map((h) => `cascade rollback --deployment ${h.deployment}`))] }
      : null;
  return {
    revision: sha,
    ...(commit ? { subject: commit.subject, author: commit.author } : {}),
    state,
    superseded: false,
    regions,
    deployments: [...totals.values()].sort((a, b) => compareStrings(a.deployment, b.deployment) || compareStrings(a.version, b.version)),
    halted,
    undo,
  };
}

/** Case-insensitive; every word of the query must match the region, id, state or an `app=version`. */
export function searchDevices(records: RegionRecord[], query: string, limit: number): DeviceSearch {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  const rows: DeviceRow[] = [];
  let total = 0;
  let matched = 0;
  const truncatedRegions: string[] = [];
  const sorted = [...records].sort((a, b) => compareStrings(a.summary.region, b.summary.region));
  for (const { summary } of sorted) {
    total += summary.devices.total;
    if (summary.devicesTruncated) truncatedRegions.push(summary.region);
    for (const device of summary.devicesList ?? []) {
      const haystack = [summary.region, device.id, device.state, device.heldBy ? 'held' : '', ...Object.entries(device.apps).map(([app, version]) => `${app}=${version}`)]
        .join(' ')
        .toLowerCase();
      if (!words.every((word) => haystack.includes(word))) continue;
      matched++;
      if (rows.length < limit) {
        const row: DeviceRow = { region: summary.region, id: device.id, state: device.state, apps: device.apps };
        if (device.failed) row.failed = device.failed;
        if (device.heldBy) row.heldBy = device.heldBy;
        rows.push(row);
      }
    }
  }
  return { total, matched, devices: rows, truncatedRegions };
}
