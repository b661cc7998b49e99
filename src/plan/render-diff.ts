import { plural } from '../core/text.js';
import { CHANGE_KINDS, type ChangeKind, type DeploymentEdit, type DiffGroup, type RevisionDiff } from './diff-revisions.js';
import { cell, code, html, markdownText, row } from './render-markdown.js';

/** What the reader is told about the revisions and the inventory; the diff itself holds only commit ids. */
export interface DiffLabels {
  /** e.g. `origin/main (3f2a9c1)`; defaults to the short commit id. */
  base?: string;
  /** defaults to the short commit id, or "the working tree". */
  head?: string;
  /** e.g. `examples/inventory.json` or `the region at http://...`; omitted when no inventory was given. */
  inventory?: string;
}

export interface DiffMarkdownOptions extends DiffLabels {
  /** Devices listed per Deployment and region before "... and N more"; totals always count every device. */
  maxDevicesPerGroup?: number;
}

export const DEFAULT_MAX_DEVICES_PER_GROUP = 50;

const NOUNS: Record<ChangeKind, string> = { install: 'install', upgrade: 'upgrade', downgrade: 'downgrade', remove: 'removal' };

function describeKinds(counts: Record<ChangeKind, number>): string {
  const parts = CHANGE_KINDS.filter((k) => counts[k] > 0).map((k) => plural(counts[k], NOUNS[k]));
  return parts.length > 0 ? parts.join(', ') : 'no changes';
}

function labelsOf(diff: RevisionDiff, labels: DiffLabels): { base: string; head: string } {
  return {
    base: labels.base ?? (diff.base === null ? 'the working tree' : diff.base.slice(0, 12)),
    head: labels.head ?? (diff.head === null ? 'the working tree' : diff.head.slice(0, 12)),
  };
}

function versionChange(from: string | null, to: string | null, arrow = '->'): string {
  return `${from ?? '(none)'} ${arrow} ${to ?? '(none)'}`;
}

function describeEdit(edit: DeploymentEdit): string {
  if (edit.change === 'added') return `${edit.name}: added (${edit.app} ${edit.to})`;
  if (edit.change === 'removed') return `${edit.name}: deleted (was ${edit.app} ${edit.from})`;
  const version = edit.from !== edit.to ? `${edit.app} ${edit.from} -> ${edit.to}` : `${edit.app} ${edit.to}`;
  const others = edit.fields.filter((f) => f !== 'version');
  return `${edit.name}: ${version}${others.length > 0 ? `; ${others.join(', ')} changed` : ''}`;
}

function groupHeading(group: DiffGroup, arrow = '->'): string {
  const versions = group.from !== null || group.to !== null ? ` ${versionChange(group.from, group.to, arrow)}` : ' (several versions)';
  return `${group.deployment} in ${group.region}: ${group.app}${versions} on ${plural(group.devices, 'device')} (${describeKinds(group.counts)})`;
}

function summarySentence(diff: RevisionDiff): string {
  if (diff.totals.changes === 0) {
    return diff.inventory === 0 ? 'No inventory given: only the Deployments are compared.' : `No device of the ${plural(diff.inventory, 'device')} compared changes its desired versions.`;
  }
  return `${plural(diff.totals.devices, 'device')} in ${plural(diff.totals.regions, 'region')} change: ${describeKinds(diff.totals.counts)}`;
}

/** The diff in a terminal: summary, warnings, Deployments, then per Deployment and region every device. */
export function renderDiffText(diff: RevisionDiff, labels: DiffLabels = {}): string {
  const { base, head } = labelsOf(diff, labels);
  const lines: string[] = [`Cascade diff ${base} -> ${head}`];
  if (labels.inventory) lines.push(`against ${plural(diff.inventory, 'device')} of ${labels.inventory}`);
  lines.push(summarySentence(diff));
  if (diff.warnings.length > 0) {
    lines.push('', 'Warnings');
    for (const warning of diff.warnings) lines.push(`  ! ${warning.message}`);
  }
  lines.push('', 'Deployments');
  if (diff.deployments.length === 0) lines.push('  no Deployment changed');
  for (const edit of diff.deployments) lines.push(`  ${describeEdit(edit)}`);
  for (const group of diff.groups) {
    lines.push('', groupHeading(group));
    const waves = group.waves.length > 1 ? group.waves.map((w) => `${w.devices} in wave ${w.wave}`).join(', ') : '';
    if (waves) lines.push(`  waves: ${waves}`);
    const rows = [['DEVICE', 'APP', 'CHANGE', 'BASE', 'HEAD', 'RUNNING', 'WAVE']];
    for (const c of group.changes) rows.push([c.device, c.app, c.kind, c.from ?? '-', c.to ?? '-', c.running ?? '-', c.wave === null ? '-' : String(c.wave)]);
    lines.push(...table(rows, '  '));
  }
  if (diff.conflicts.length > 0) {
    lines.push('', 'Conflicts at head');
    for (const c of diff.conflicts) lines.push(`  ${c.device} ${c.app}: ${c.message}`);
  }
  return lines.join('\n') + '\n';
}

/**
 * The diff as a pull-request comment: the summary first, warnings as GitHub alerts, a table per
 * Deployment and region, then each group's devices folded in `<details>` (long lists capped).
 */
export function renderDiffMarkdown(diff: RevisionDiff, options: DiffMarkdownOptions = {}): string {
  const cap = options.maxDevicesPerGroup ?? DEFAULT_MAX_DEVICES_PER_GROUP;
  const { base, head } = labelsOf(diff, options);
  const out: string[] = [`### Cascade diff: ${code(base)} → ${code(head)}`, ''];
  const summary = summarySentence(diff);
  out.push(diff.totals.changes > 0 ? `**${markdownText(summary)}.**` : markdownText(summary));
  if (options.inventory) out.push('', `_Compared against ${plural(diff.inventory, 'device')} of ${markdownText(options.inventory)}._`);
  out.push('');
  for (const warning of diff.warnings) out.push('> [!WARNING]', `> ${markdownText(warning.message)}.`, '');

  if (diff.groups.length > 0) {
    out.push('| Deployment | Region | App | Base → head | Devices | Changes | Waves | Window |', '|---|---|---|---|---:|---|---|---|');
    for (const g of diff.groups) {
      out.push(
        row([
          cell(g.deployment),
          cell(g.region),
          cell(g.app),
          g.from === null && g.to === null ? '_several_' : `${g.from === null ? '_none_' : code(g.from)} → ${g.to === null ? '_none_' : code(g.to)}`,
          g.devices,
          describeKinds(g.counts),
          g.waves.map((w) => `w${w.wave}: ${w.devices}`).join(' · '),
          g.counts.remove === g.changes.length ? '' : g.window ? 'yes' : 'none',
        ]),
      );
    }
    out.push('');
  }

  out.push('#### Deployments', '');
  if (diff.deployments.length === 0) out.push('No Deployment changed.');
  for (const edit of diff.deployments) out.push(`- ${markdownEdit(edit)}`);
  out.push('');

  for (const g of diff.groups) {
    out.push('<details>', `<summary>${html(groupHeading(g, '→'))}</summary>`, '');
    out.push('| Device | App | Change | Base | Head | Running | Wave |', '|---|---|---|---|---|---|---:|');
    const shown = Math.min(g.changes.length, cap);
    for (let i = 0; i < shown; i++) {
      const c = g.changes[i]!;
      out.push(row([cell(c.device), cell(c.app), c.kind, c.from === null ? '' : code(c.from), c.to === null ? '' : code(c.to), c.running === null ? '' : code(c.running), c.wave ?? '']));
    }
    if (g.changes.length > shown) out.push('', `... and ${g.changes.length - shown} more`);
    out.push('', '</details>', '');
  }

  if (diff.conflicts.length > 0) {
    out.push('<details>', `<summary>Conflicts at head: ${plural(diff.conflicts.length, 'device/app pair')}</summary>`, '', '| Device | App | Deployments | Priority |', '|---|---|---|---:|');
    for (const c of diff.conflicts.slice(0, cap)) out.push(row([cell(c.device), cell(c.app), c.deployments.map(cell).join(', '), c.priority]));
    if (diff.conflicts.length > cap) out.push('', `... and ${diff.conflicts.length - cap} more`);
    out.push('', '</details>', '');
  }
  return out.join('\n');
}

function markdownEdit(edit: DeploymentEdit): string {
  const name = `**${markdownText(edit.name)}**`;
  if (edit.change === 'added') return `${name}: added (${markdownText(edit.app)} ${code(edit.to ?? '')})`;
  if (edit.change === 'removed') return `${name}: **deleted** (was ${markdownText(edit.app)} ${code(edit.from ?? '')})`;
  const version = edit.from !== edit.to ? `${markdownText(edit.app)} ${code(edit.from ?? '')} → ${code(edit.to ?? '')}` : `${markdownText(edit.app)} ${code(edit.to ?? '')}`;
  const others = edit.fields.filter((f) => f !== 'version');
  return `${name}: ${version}${others.length > 0 ? `; ${others.map((f) => code(f)).join(', ')} changed` : ''}`;
}

/** The machine-readable diff of `cascade diff --format json`; field order is part of the format. */
export function renderDiffJson(diff: RevisionDiff, labels: DiffLabels = {}): string {
  const json = {
    base: { label: labels.base ?? null, revision: diff.base },
    head: { label: labels.head ?? null, revision: diff.head },
    inventory: diff.inventory,
    totals: diff.totals,
    warnings: diff.warnings,
    deployments: diff.deployments,
    groups: diff.groups.map(({ changes, ...group }) => ({ ...group, changes })),
    conflicts: diff.conflicts.map((c) => ({ device: c.device, app: c.app, deployments: [...c.deployments], priority: c.priority, message: c.message })),
  };
  return JSON.stringify(json, null, 2) + '\n';
}

/** Left-aligned columns two spaces apart; the last column is not padded. */
function table(rows: string[][], indent: string): string[] {
  const widths: number[] = [];
  for (const r of rows) for (let i = 0; i < r.length - 1; i++) widths[i] = Math.max(widths[i] ?? 0, r[i]!.length);
  return rows.map((r) => indent + r.map((c, i) => (i < r.length - 1 ? c.padEnd(widths[i]!) : c)).join('  ').trimEnd());
}
