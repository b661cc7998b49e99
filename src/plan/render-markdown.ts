import { plural } from '../core/text.js';
import { describeCounts, describeDeploymentRegion, summarizePlan, type DeploymentSummary } from './summary.js';
import type { Plan, PlanStep } from './types.js';

export interface MarkdownOptions {
  /** Steps listed per Deployment before "... and N more"; the totals always count every step. */
  maxStepsPerDeployment?: number;
}

export const DEFAULT_MAX_STEPS_PER_DEPLOYMENT = 50;

/**
 * The plan as a pull-request comment: a heading, summary tables, conflicts, then one collapsible
 * `<details>` per Deployment with its device steps (long lists capped).
 */
export function renderPlanMarkdown(plan: Plan, options: MarkdownOptions = {}): string {
  const cap = options.maxStepsPerDeployment ?? DEFAULT_MAX_STEPS_PER_DEPLOYMENT;
  const summary = summarizePlan(plan);
  const out: string[] = [];
  out.push(`### Cascade plan for ${plan.revision === null ? 'the working tree' : code(plan.revision)}`, '');
  if (summary.steps === 0) {
    out.push('Nothing to do: every device runs the versions its Deployments ask for.', '');
  } else {
    out.push(`**${plural(summary.steps, 'step')} on ${plural(summary.devices, 'device')}**: ${describeCounts(summary.counts)}.`, '');
  }

  if (plan.conflicts.length > 0) {
    out.push(
      '> [!WARNING]',
      `> ${plural(plan.conflicts.length, 'conflict')}: Deployments of equal priority select the same device and app, so no step is planned for ${plan.conflicts.length === 1 ? 'it' : 'them'}. Give one a higher \`spec.priority\` or make their selectors disjoint.`,
      '',
    );
  }

  if (summary.regions.length > 0) {
    out.push('| Region | Devices | Steps | Install | Upgrade | Downgrade | Remove |', '|---|---:|---:|---:|---:|---:|---:|');
    for (const r of summary.regions) {
      out.push(row([cell(r.region), r.devices, r.steps, r.counts.install, r.counts.upgrade, r.counts.downgrade, r.counts.remove]));
    }
    out.push('');
    out.push('| Deployment | Target | Region | Devices | Install | Upgrade | Downgrade | Remove | Waves |', '|---|---|---|---:|---:|---:|---:|---:|---|');
    for (const d of summary.deployments) {
      for (const r of d.regions) {
        out.push(
          row([
            d.deployment === null ? '_(removals)_' : cell(d.deployment),
            d.deployment === null ? '' : `${cell(d.app ?? '')} → ${code(d.to ?? '')}`,
            cell(r.region),
            r.devices,
            r.counts.install,
            r.counts.upgrade,
            r.counts.downgrade,
            r.counts.remove,
            r.waves.map((w) => `w${w.wave}: ${w.steps}`).join(' · '),
          ]),
        );
      }
    }
    out.push('');
  }

  if (plan.conflicts.length > 0) {
    out.push('#### Conflicts', '', '| Device | App | Deployments | Priority |', '|---|---|---|---:|');
    for (const c of plan.conflicts) {
      out.push(row([cell(c.device), cell(c.app), c.deployments.map(cell).join(', '), c.priority]));
    }
    out.push('');
  }

  const stepsByDeployment = groupByDeployment(plan.steps);
  for (const d of summary.deployments) {
    out.push(...deploymentDetails(d, stepsByDeployment.get(d.deployment) ?? [], cap));
  }
  return out.join('\n');
}

function deploymentDetails(d: DeploymentSummary, steps: PlanStep[], cap: number): string[] {
  const isRemoval = d.deployment === null;
  const title = isRemoval
    ? `<b>Removals</b>: ${plural(d.steps, 'app')} on ${plural(d.devices, 'device')} no Deployment selects anymore`
    : `<b>${html(d.deployment!)}</b>: ${html(d.app ?? '')} → ${html(d.to ?? '')} on ${plural(d.devices, 'device')} (${describeCounts(d.counts)})`;
  const out = ['<details>', `<summary>${title}</summary>`, ''];
  for (const r of d.regions) out.push(`- ${markdownText(describeDeploymentRegion(r, isRemoval))}`);
  out.push('', '| Device | Region | Wave | Action | From | To |', '|---|---|---:|---|---|---|');
  const shown = Math.min(steps.length, cap);
  for (let i = 0; i < shown; i++) {
    const s = steps[i]!;
    out.push(row([cell(s.device), cell(s.region), s.wave ?? '', s.action, s.from === null ? '' : code(s.from), s.to === null ? '' : code(s.to)]));
  }
  if (steps.length > shown) out.push('', `... and ${steps.length - shown} more`);
  out.push('', '</details>', '');
  return out;
}

function groupByDeployment(steps: PlanStep[]): Map<string | null, PlanStep[]> {
  const groups = new Map<string | null, PlanStep[]>();
  for (const step of steps) {
    const group = groups.get(step.deployment);
    if (group) group.push(step);
    else groups.set(step.deployment, [step]);
  }
  return groups;
}

export function row(cells: (string | number)[]): string {
  return `| ${cells.join(' | ')} |`;
}

/** Text in a table cell: no markup, no pipes, no line breaks. */
export function cell(text: string): string {
  return markdownText(text).replace(/\|/g, '\\|');
}

export function markdownText(text: string): string {
  return html(text)
    .replace(/[\r\n]+/g, ' ')
    .replace(/([\\`*_[\]#])/g, '\\$1');
}

/** Inline code; a value containing backticks is fenced with more of them. */
export function code(text: string): string {
  const clean = text.replace(/[\r\n]+/g, ' ').replace(/\|/g, '\\|');
  const longest = Math.max(0, ...(clean.match(/`+/g) ?? []).map((run) => run.length));
  const fence = '`'.repeat(longest + 1);
  return longest > 0 ? `${fence} ${clean} ${fence}` : `${fence}${clean}${fence}`;
}

export function html(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
