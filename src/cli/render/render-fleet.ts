import type { FleetView, RevisionView } from '../../hub/views.js';

const short = (sha: string | null) => (sha ? sha.slice(0, 8) : '-');

function ago(ms: number, now: number): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  return `${Math.round(s / 3600)}h ago`;
}

/** The hub's fleet for a person: one line per region. */
export function renderFleet(fleet: FleetView): string {
  const stale = fleet.regions.filter((r) => r.stale).length;
  const lines = [`fleet: ${fleet.regions.length} region(s)${stale ? `, ${stale} stale` : ''}`];
  if (fleet.regions.length === 0) lines.push('  no region has reported yet');
  const width = Math.max(0, ...fleet.regions.map((r) => r.region.length));
  for (const r of fleet.regions) {
    const d = r.devices;
    const heard = r.stale ? `STALE, last heard ${ago(r.receivedAt, fleet.at)}` : `live ${ago(r.receivedAt, fleet.at)}`;
    const refused = r.revision.error ? `  refused ${short(r.revision.attempted)}` : '';
    const git = r.source.reachable ? '' : '  (git unreachable)';
    lines.push(
      `  ${r.region.padEnd(width)}  applied ${short(r.revision.applied)}${refused}  ${d.total} devices: ${d.converged} converged, ${d.updating} updating, ` +
        `${d.pending ? `${d.pending} waiting, ` : ''}${d.failed} failed, ${d.offline} offline  [${heard}]${git}`,
    );
  }
  return lines.join('\n');
}

/** One commit across the fleet: its state, what halted and how to undo it, per region its rollouts. */
export function renderRevision(view: RevisionView): string {
  const lines = [`commit ${short(view.revision)}  ${view.state}${view.superseded ? ' (superseded)' : ''}`];
  for (const h of view.halted) lines.push(`  halted: ${h.deployment} ${h.version} in ${h.region}: ${h.reason}`);
  if (view.undo) {
    lines.push(`  undo:   ${view.undo.revert}`);
    for (const rollback of view.undo.rollbacks) lines.push(`          or ${rollback}`);
  }
  for (const region of view.regions) {
    const where = region.applied ? 'applied' : region.refused ? 'refused' : `not on it (applied ${short(region.current)})`;
    const flags = [where, region.stale ? 'stale' : ''].filter(Boolean).join(', ');
    lines.push(`  ${region.region}: ${flags}`);
    for (const error of (region.errors ?? []).slice(0, 5)) lines.push(`      ${error}`);
    for (const d of region.deployments) {
      const c = d.counts;
      lines.push(
        `    ${d.deployment} -> ${d.version}  ${d.state}  wave ${d.currentWave}/${d.waves.length}: ` +
          `${c.converged}/${c.devices} converged, ${c.updating} updating, ${c.pending} waiting, ${c.failed} failed, ${c.offline} offline`,
      );
    }
  }
  return lines.join('\n');
}

export function renderHubStatus(fleet: FleetView, revisions: RevisionView[]): string {
  const parts = [renderFleet(fleet)];
  if (revisions.length > 0) parts.push('recent commits', ...revisions.map((r) => renderRevision(r).replace(/^/gm, '  ')));
  return parts.join('\n');
}
