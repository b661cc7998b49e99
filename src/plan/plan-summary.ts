import { compareStrings, plural } from '../core/text.js';
import type { Plan, PlanAction, PlanStep } from './types.js';

/** Totals a reviewer reads before the steps: per region, per Deployment (and region), per wave. */
export type ActionCounts = Record<PlanAction, number>;

export const ACTIONS: readonly PlanAction[] = ['install', 'upgrade', 'downgrade', 'remove'];

export interface WaveCount {
  wave: number;
  steps: number;
}

export interface RegionSummary {
  region: string;
  /** Distinct devices with at least one step. */
  devices: number;
  steps: number;
  counts: ActionCounts;
}

/** One Deployment's steps in one region. */
export interface DeploymentRegionSummary {
  region: string;
  devices: number;
  steps: number;
  counts: ActionCounts;
  /** Ascending; removals have none. */
  waves: WaveCount[];
}

export interface DeploymentSummary {
  /** null for the removals, which no Deployment asks for. */
  deployment: string | null;
  /** The Deployment's app; null for removals. */
  app: string | null;
  /** The version the Deployment asks for; null for removals. */
  to: string | null;
  devices: number;
  steps: number;
  counts: ActionCounts;
  waves: WaveCount[];
  regions: DeploymentRegionSummary[];
}

export interface PlanSummary {
  revision: string | null;
  steps: number;
  devices: number;
  counts: ActionCounts;
  /** Sorted by region. */
  regions: RegionSummary[];
  /** Sorted by Deployment name, removals last. */
  deployments: DeploymentSummary[];
  conflicts: number;
}

export function emptyCounts(): ActionCounts {
  return { install: 0, upgrade: 0, downgrade: 0, remove: 0 };
}

export function summarizePlan(plan: Plan): PlanSummary {
  const counts = emptyCounts();
  const devices = new Set<string>();
  const regions = new Map<string, RegionSummary & { deviceSet: Set<string> }>();
  const deployments = new Map<string | null, DeploymentAccumulator>();
  for (const step of plan.steps) {
    counts[step.action]++;
    devices.add(step.device);
    let region = regions.get(step.region);
    if (!region) {
      region = { region: step.region, devices: 0, steps: 0, counts: emptyCounts(), deviceSet: new Set() };
      regions.set(step.region, region);
    }
    region.steps++;
    region.counts[step.action]++;
    region.deviceSet.add(step.device);
    let deployment = deployments.get(step.deployment);
    if (!deployment) {
      deployment = new DeploymentAccumulator(step);
      deployments.set(step.deployment, deployment);
    }
    deployment.add(step);
  }
  return {
    revision: plan.revision,
    steps: plan.steps.length,
    devices: devices.size,
    counts,
    regions: [...regions.values()]
      .sort((a, b) => compareStrings(a.region, b.region))
      .map(({ deviceSet, ...region }) => ({ ...region, devices: deviceSet.size })),
    deployments: [...deployments.values()]
      .sort((a, b) => (a.deployment === null ? 1 : b.deployment === null ? -1 : compareStrings(a.deployment, b.deployment)))
      .map((d) => d.summary()),
    conflicts: plan.conflicts.length,
  };
}

class DeploymentAccumulator {
  readonly deployment: string | null;
  private readonly first: PlanStep;
  private readonly counts = emptyCounts();
  private readonly devices = new Set<string>();
  private readonly waves = new Map<number, number>();
  private readonly regions = new Map<string, { steps: number; counts: ActionCounts; devices: Set<string>; waves: Map<number, number> }>();
  private steps = 0;

  constructor(first: PlanStep) {
    this.deployment = first.deployment;
    this.first = first;
  }

  add(step: PlanStep): void {
    this.steps++;
    this.counts[step.action]++;
    this.devices.add(step.device);
    let region = this.regions.get(step.region);
    if (!region) {
      region = { steps: 0, counts: emptyCounts(), devices: new Set(), waves: new Map() };
      this.regions.set(step.region, region);
    }
    region.steps++;
    region.counts[step.action]++;
    region.devices.add(step.device);
    if (step.wave !== null) {
      this.waves.set(step.wave, (this.waves.get(step.wave) ?? 0) + 1);
      region.waves.set(step.wave, (region.waves.get(step.wave) ?? 0) + 1);
    }
  }

  summary(): DeploymentSummary {
    const isRemoval = this.deployment === null;
    return {
      deployment: this.deployment,
      app: isRemoval ? null : this.first.app,
      to: isRemoval ? null : this.first.to,
      devices: this.devices.size,
      steps: this.steps,
      counts: this.counts,
      waves: waveCounts(this.waves),
      regions: [...this.regions.entries()]
        .sort(([a], [b]) => compareStrings(a, b))
        .map(([region, r]) => ({ region, devices: r.devices.size, steps: r.steps, counts: r.counts, waves: waveCounts(r.waves) })),
    };
  }
}

function waveCounts(waves: Map<number, number>): WaveCount[] {
  return [...waves.entries()].sort(([a], [b]) => a - b).map(([wave, steps]) => ({ wave, steps }));
}

/** "2 installs, 1 upgrade": the non-zero counts, in action order; "no changes" when all are zero. */
export function describeCounts(counts: ActionCounts): string {
  const parts = ACTIONS.filter((a) => counts[a] > 0).map((a) => plural(counts[a], ACTION_NOUNS[a]));
  return parts.length > 0 ? parts.join(', ') : 'no changes';
}

const ACTION_NOUNS: Record<PlanAction, string> = { install: 'install', upgrade: 'upgrade', downgrade: 'downgrade', remove: 'removal' };

/**
 * What a Deployment does in a region, as a reviewer would say it:
 * "upgrades 412 devices in eu-west: 4 in wave 1, 40 in wave 2, 368 in wave 3".
 */
export function describeDeploymentRegion(summary: DeploymentRegionSummary, isRemoval = false): string {
  const c = summary.counts;
  const verbs: string[] = [];
  if (c.install > 0) verbs.push(`installs on ${plural(c.install, 'device')}`);
  if (c.upgrade > 0) verbs.push(`upgrades ${plural(c.upgrade, 'device')}`);
  if (c.downgrade > 0) verbs.push(`downgrades ${plural(c.downgrade, 'device')}`);
  if (c.remove > 0) verbs.push(`removes ${plural(c.remove, 'app')} from ${plural(summary.devices, 'device')}`);
  const actions = verbs.length <= 1 ? (verbs[0] ?? 'changes nothing') : `${verbs.slice(0, -1).join(', ')} and ${verbs.at(-1)}`;
  const sentence = `${actions} in ${summary.region}`;
  if (isRemoval || summary.waves.length === 0) return sentence;
  if (summary.waves.length === 1) {
    const only = summary.waves[0]!;
    return `${sentence}, ${summary.steps === 1 ? 'in' : 'all in'} wave ${only.wave}`;
  }
  return `${sentence}: ${summary.waves.map((w) => `${w.steps} in wave ${w.wave}`).join(', ')}`;
}


