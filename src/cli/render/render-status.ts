import { describeHalt } from '../../plan/rollout/totals.js';
import type { DeploymentRolloutStatus, WaveStatus } from '../../plan/rollout/types.js';
import type { RegionStatus } from '../../reconciler/region-status.js';

const short = (sha: string | null) => (sha ? sha.slice(0, 8) : '-');
// eslint-disable-next-line no-control-regex
const printable = (text: string) => text.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ');

/** The region status for a person: revision, devices, and each Deployment's rollout wave by wave. */
export function renderRegionStatus(status: RegionStatus): string {
  const d = status.devices;
  const lines = [
    `region ${status.region}`,
    `  revision  applied ${short(status.revision.applied)}  attempted ${short(status.revision.attempted)}${status.source.reachable ? '' : status.revision.applied ? '  (git unreachable: serving the last good revision)' : '  (git unreachable: no revision applied yet)'}`,
  ];
  // Subject and author come from git: control characters never reach the terminal.
  if (status.revision.subject !== undefined) lines.push(`  commit    ${printable(status.revision.subject)}${status.revision.author ? ` (${printable(status.revision.author)})` : ''}`);
  if (!status.source.reachable && status.source.error) lines.push(`  git       ${status.source.error}`);
  if (status.revision.error) {
    const refused = status.revision.refused;
    lines.push(`  refused   ${short(status.revision.attempted)}${refused ? ` ${printable(refused.subject)} (${printable(refused.author)})` : ''}:`);
    for (const e of status.revision.error.slice(0, 10)) lines.push(`    ${e}`);
    if (status.revision.error.length > 10) lines.push(`    ... and ${status.revision.error.length - 10} more`);
  }
  for (const c of status.conditions ?? []) {
    if (c.type === 'Ready' ? c.status !== 'True' : c.status === 'True') lines.push(`  ${c.type.padEnd(9)} ${c.status} ${c.reason}${c.message ? `: ${c.message}` : ''}`);
  }
  lines.push(
    `  devices   ${d.total} total: ${d.converged} converged, ${d.updating} updating, ${d.pending ?? 0} pending, ${d.failed} failed, ${d.offline} offline`,
    `  updates   ${status.updatesSent} handed out`,
  );
  if (status.rollouts?.length) {
    lines.push('  rollouts');
    for (const rollout of status.rollouts) lines.push(...renderRollout(rollout).map((l) => `    ${l}`));
  }
  return lines.join('\n');
}

export function renderRollout(rollout: DeploymentRolloutStatus): string[] {
  const lines = [
    `${rollout.deployment} -> ${rollout.version}  ${rollout.state}${rollout.rollback ? ' (rollback)' : ''}  wave ${rollout.currentWave}/${rollout.waves.length}  rev ${short(rollout.revision)}`,
    `  ${rollout.message}`,
  ];
  if (rollout.halted) {
    const failing = rollout.halted.devices;
    lines.push(`  halted ${describeHalt(rollout)}`);
    if (failing.length) lines.push(`  failing at the halt: ${failing.slice(0, 10).join(', ')}${failing.length > 10 ? ', ...' : ''}`);
    lines.push(`  undo: cascade rollback --deployment ${rollout.deployment}   (or git revert ${short(rollout.revision)})`);
    lines.push(`  retry the failed devices (cause outside the version): cascade rollout retry ${rollout.deployment} --region-url URL`);
  }
  if (rollout.state === 'Paused') lines.push(`  resume: cascade rollout resume ${rollout.deployment} --push`);
  if (rollout.retry) lines.push(`  retried: round ${rollout.retry.round}, ${rollout.retry.count ?? rollout.retry.devices.length} device(s) at ${new Date(rollout.retry.at).toISOString()}`);
  if (rollout.revert) {
    lines.push(`  onHalt ${rollout.revert.mode}: ${rollout.revert.outcome}${rollout.revert.commit ? ` ${short(rollout.revert.commit)}` : ''}${rollout.revert.branch ? ` to ${rollout.revert.branch}` : ''}: ${rollout.revert.message}`);
  }
  for (const wave of rollout.waves) lines.push(`  ${waveLine(wave)}`);
  return lines;
}

export function waveLine(wave: WaveStatus): string {
  const width = 20;
  const filled = wave.devices ? Math.round((wave.healthy / wave.devices) * width) : width;
  const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
  return `wave ${wave.wave} ${String(wave.percent).padStart(3)}% [${bar}] ${wave.healthy}/${wave.devices} healthy, ${wave.updating} updating, ${wave.pending} pending, ${wave.failed} failed, ${wave.offline} offline${wave.new ? `, ${wave.new} new (no report yet)` : ''}`;
}
