import type { RegionStatus } from '../reconciler/region-status.js';

const short = (sha: string | null) => (sha ? sha.slice(0, 8) : '-');

/** The region status for a person. */
export function renderRegionStatus(status: RegionStatus): string {
  const d = status.devices;
  const lines = [
    `region ${status.region}`,
    `  revision  applied ${short(status.revision.applied)}  attempted ${short(status.revision.attempted)}${status.source.reachable ? '' : '  (git unreachable: serving the last good revision)'}`,
  ];
  if (status.revision.error) {
    lines.push(`  refused   ${short(status.revision.attempted)}:`);
    for (const e of status.revision.error.slice(0, 10)) lines.push(`    ${e}`);
    if (status.revision.error.length > 10) lines.push(`    ... and ${status.revision.error.length - 10} more`);
  }
  lines.push(
    `  devices   ${d.total} total: ${d.converged} converged, ${d.updating} updating, ${d.failed} failed, ${d.offline} offline`,
    `  updates   ${status.updatesSent} handed out`,
  );
  return lines.join('\n');
}

/** A rollout is settled when no online device is still updating. */
export function isSettled(status: RegionStatus): boolean {
  return status.devices.updating === 0;
}
