import { plural } from '../core/text.js';
import { describeCounts, describeDeploymentRegion, summarizePlan, type DeploymentSummary } from './plan-summary.js';
import type { Plan } from './types.js';

/**
 * The plan as a reviewer reads it in a terminal: totals per region and per Deployment (with waves),
 * conflicts, then every step in plan order.
 */
export function renderPlanText(plan: Plan): string {
  const summary = summarizePlan(plan);
  const lines: string[] = [];
  lines.push(`Cascade plan for ${plan.revision === null ? 'the working tree' : `revision ${plan.revision}`}`);
  if (summary.steps === 0) {
    lines.push('Nothing to do: every device runs the versions its Deployments ask for.');
  } else {
    lines.push(`${plural(summary.steps, 'step')} on ${plural(summary.devices, 'device')}: ${describeCounts(summary.counts)}`);
  }
  if (plan.conflicts.length > 0) {
    lines.push(`${plural(plan.conflicts.length, 'conflict')}: no step is planned for ${plan.conflicts.length === 1 ? 'that device and app' : 'those devices and apps'} (see Conflicts)`);
  }

  if (summary.regions.length > 0) {
    lines.push('', 'Regions');
    lines.push(
      ...table(
        summary.regions.map((r) => [r.region, plural(r.devices, 'device'), plural(r.steps, 'step'), describeCounts(r.counts)]),
        '  ',
      ),
    );
  }

  if (summary.deployments.length > 0) {
    lines.push('', 'Deployments');
    for (const deployment of summary.deployments) {
      lines.push(`  ${deploymentHeading(deployment)}`);
      for (const region of deployment.regions) {
        lines.push(`    ${describeDeploymentRegion(region, deployment.deployment === null)}`);
      }
    }
  }

  if (plan.conflicts.length > 0) {
    lines.push('', 'Conflicts');
    for (const conflict of plan.conflicts) lines.push(`  ${conflict.device} ${conflict.app}: ${conflict.message}`);
  }

  if (plan.steps.length > 0) {
    lines.push('', 'Steps');
    const rows = [['REGION', 'DEPLOYMENT', 'WAVE', 'DEVICE', 'APP', 'ACTION', 'FROM', 'TO', 'REASON']];
    for (const s of plan.steps) {
      rows.push([s.region, s.deployment ?? '-', s.wave === null ? '-' : String(s.wave), s.device, s.app, s.action, s.from ?? '-', s.to ?? '-', s.reason]);
    }
    lines.push(...table(rows, '  '));
  }
  return lines.join('\n') + '\n';
}

function deploymentHeading(d: DeploymentSummary): string {
  if (d.deployment === null) return `removals (no deployment selects these apps): ${plural(d.steps, 'app')} on ${plural(d.devices, 'device')}`;
  return `${d.deployment}: ${d.app} -> ${d.to}, ${plural(d.devices, 'device')} (${describeCounts(d.counts)})`;
}

/** Left-aligned columns two spaces apart; the last column is not padded. */
function table(rows: string[][], indent: string): string[] {
  const widths: number[] = [];
  for (const row of rows) {
    for (let i = 0; i < row.length - 1; i++) widths[i] = Math.max(widths[i] ?? 0, row[i]!.length);
  }
  return rows.map((row) => indent + row.map((cell, i) => (i < row.length - 1 ? cell.padEnd(widths[i]!) : cell)).join('  '));
}
