import { artifactAndCommandProblems, type ArtifactUrlPolicy } from './artifact-policy.js';
import type { CheckedDoc, CheckProblem, NamedDoc } from './check-types.js';
import type { AppDoc, DeploymentDoc, DocSource, RegionDoc, RolloutSpec } from './model.js';
import { containerPolicyRefusals } from '../core/container-policy.js';
import { closest } from './schemas.js';
import { selectorsAreDisjoint } from './selector.js';

export type { CheckedDoc, CheckProblem, NamedDoc } from './check-types.js';

/**
 * The checks no single document's schema can express: unique names, references between
 * documents, artifacts for deployed versions, wave order, one Fleet, equal-priority
 * Deployments that might select the same device, and artifact URLs and commands (artifact-policy.ts).
 */
export function checkFleet(valid: readonly CheckedDoc[], named: readonly NamedDoc[], policy: ArtifactUrlPolicy = {}): CheckProblem[] {
  const problems: CheckProblem[] = [];
  const ordered = [...named].sort((a, b) => compareSources(a.source, b.source));
  problems.push(...duplicateNames(ordered), ...extraFleets(ordered));

  const appNames = new Set(named.filter((d) => d.kind === 'App').map((d) => d.name));
  const regionNames = new Set(named.filter((d) => d.kind === 'Region').map((d) => d.name));
  const validApps = new Map<string, AppDoc>();
  const validRegions = new Map<string, RegionDoc>();
  for (const { doc } of valid) {
    if (doc.kind === 'App') validApps.set(doc.metadata.name, doc);
    if (doc.kind === 'Region') validRegions.set(doc.metadata.name, doc);
  }

  const deployments: Array<CheckedDoc & { doc: DeploymentDoc }> = [];
  for (const checked of valid) {
    const { doc, source } = checked;
    if (doc.kind !== 'App') problems.push(...waveProblems(doc.spec.rollout, source));
    if (doc.kind !== 'Deployment') continue;
    deployments.push(checked as CheckedDoc & { doc: DeploymentDoc });
    problems.push(...referenceProblems(doc, source, appNames, regionNames, validApps));
    problems.push(...containerPolicyProblems(doc, source, validApps, validRegions));
  }
  problems.push(...priorityOverlaps(deployments));
  problems.push(...artifactAndCommandProblems(valid, policy));
  return problems;
}

function duplicateNames(ordered: readonly NamedDoc[]): CheckProblem[] {
  const byKey = new Map<string, NamedDoc[]>();
  for (const d of ordered) {
    const key = `${d.kind}/${d.name}`;
    const list = byKey.get(key);
    if (list) list.push(d);
    else byKey.set(key, [d]);
  }
  const problems: CheckProblem[] = [];
  for (const list of byKey.values()) {
    if (list.length < 2) continue;
    for (const d of list) {
      // Name a few other places, not thousands: a generated file can repeat one name many times.
      const others = list.filter((o) => o !== d).slice(0, 3).map((o) => where(o.source));
      if (list.length - 1 > others.length) others.push(`${list.length - 1 - others.length} more`);
      problems.push({
        code: 'duplicate-name',
        path: d.source.path,
        index: d.source.index,
        pointer: '/metadata/name',
        at: 'value',
        message: `${d.kind} "${d.name}" is defined more than once (also at ${others.join(', ')}); names must be unique per kind, rename or remove one`,
      });
    }
  }
  return problems;
}

function extraFleets(ordered: readonly NamedDoc[]): CheckProblem[] {
  const fleets = ordered.filter((d) => d.kind === 'Fleet');
  return fleets.slice(1).map((d) => ({
    code: 'duplicate-fleet',
    path: d.source.path,
    index: d.source.index,
    pointer: '',
    at: 'value' as const,
    message: `a repository has at most one Fleet document; this one ("${d.name}") comes after "${fleets[0]!.name}" at ${where(fleets[0]!.source)}; merge them`,
  }));
}

function waveProblems(rollout: RolloutSpec | undefined, source: DocSource): CheckProblem[] {
  const waves = rollout?.waves;
  if (!waves || waves.length === 0) return [];
  const at = (i: number, code: string, message: string): CheckProblem => ({
    code,
    path: source.path,
    index: source.index,
    pointer: `/spec/rollout/waves/${i}`,
    at: 'value',
    message,
  });
  for (let i = 1; i < waves.length; i++) {
    if (waves[i]! <= waves[i - 1]!) {
      return [
        at(i, 'bad-waves', `spec.rollout.waves must be strictly ascending cumulative percentages, but ${waves[i]} follows ${waves[i - 1]}; e.g. [1, 10, 50, 100]`),
      ];
    }
  }
  const last = waves[waves.length - 1]!;
  if (last !== 100) {
    return [at(waves.length - 1, 'bad-waves', `the last wave must be 100 (every selected device), not ${last}; add 100 at the end of spec.rollout.waves`)];
  }
  return [];
}

function referenceProblems(
  doc: DeploymentDoc,
  source: DocSource,
  appNames: ReadonlySet<string>,
  regionNames: ReadonlySet<string>,
  validApps: ReadonlyMap<string, AppDoc>,
): CheckProblem[] {
  const problems: CheckProblem[] = [];
  const name = doc.metadata.name;
  const problem = (code: string, pointer: string, message: string): CheckProblem => ({
    code,
    path: source.path,
    index: source.index,
    pointer,
    at: 'value',
    message,
  });
  const { app, version } = doc.spec;
  if (!appNames.has(app)) {
    problems.push(problem('unknown-app', '/spec/app', `Deployment "${name}" deploys app "${app}", but there is no App named "${app}"${suggest(app, appNames)}; add an App document or fix spec.app`));
  }
  (doc.spec.selector?.regions ?? []).forEach((region, i) => {
    if (!regionNames.has(region)) {
      problems.push(
        problem('unknown-region', `/spec/selector/regions/${i}`, `Deployment "${name}" selects region "${region}", but there is no Region named "${region}"${suggest(region, regionNames)}; add a Region document or fix spec.selector.regions`),
      );
    }
  });
  const artifacts = validApps.get(app)?.spec.artifacts;
  if (artifacts && !Object.hasOwn(artifacts, version)) {
    const declared = Object.keys(artifacts);
    problems.push(
      problem(
        'missing-artifact',
        '/spec/version',
        `Deployment "${name}" asks for ${app} version "${version}", but App "${app}" has no artifact for it (artifacts: ${declared.length ? declared.join(', ') : 'none'}); add spec.artifacts."${version}" to the App or fix spec.version`,
      ),
    );
  }
  return problems;
}

/**
 * A container app that asks for more than a Region allows (privileged, host paths outside the allow-list)
 * would be refused by every device there: say so before the commit, at the Deployment that sends it.
 */
function containerPolicyProblems(doc: DeploymentDoc, source: DocSource, apps: ReadonlyMap<string, AppDoc>, regions: ReadonlyMap<string, RegionDoc>): CheckProblem[] {
  const runtime = apps.get(doc.spec.app)?.spec.runtime;
  if (runtime?.type !== 'container') return [];
  const targets = doc.spec.selector?.regions ?? [...regions.keys()].sort();
  const problems: CheckProblem[] = [];
  for (const name of targets) {
    const region = regions.get(name);
    if (!region) continue;
    for (const refusal of containerPolicyRefusals(runtime, region.spec.containers ?? {})) {
      problems.push({
        code: 'container-policy',
        path: source.path,
        index: source.index,
        pointer: '/spec/app',
        at: 'value',
        message: `Deployment "${doc.metadata.name}" sends app "${doc.spec.app}" to region "${name}", whose devices would refuse it: ${refusal}`,
      });
    }
  }
  return problems;
}

function priorityOverlaps(deployments: ReadonlyArray<CheckedDoc & { doc: DeploymentDoc }>): CheckProblem[] {
  const groups = new Map<string, Array<CheckedDoc & { doc: DeploymentDoc }>>();
  for (const d of deployments) {
    const key = `${d.doc.spec.app}\u0000${d.doc.spec.priority ?? 0}`;
    const group = groups.get(key);
    if (group) group.push(d);
    else groups.set(key, [d]);
  }
  const problems: CheckProblem[] = [];
  for (const group of groups.values()) {
    if (group.length < 2) continue;
    group.sort((a, b) => compareSources(a.source, b.source));
    for (let j = 1; j < group.length; j++) {
      const later = group[j]!;
      for (let i = 0; i < j; i++) {
        const earlier = group[i]!;
        if (selectorsAreDisjoint(earlier.doc.spec.selector, later.doc.spec.selector)) continue;
        const spec = later.doc.spec;
        problems.push({
          code: 'priority-overlap',
          path: later.source.path,
          index: later.source.index,
          pointer: spec.priority !== undefined ? '/spec/priority' : spec.selector !== undefined ? '/spec/selector' : '/metadata/name',
          at: 'value',
          message:
            `Deployments "${earlier.doc.metadata.name}" (${where(earlier.source)}) and "${later.doc.metadata.name}" both deploy app "${spec.app}" ` +
            `with priority ${spec.priority ?? 0}, and their selectors may pick the same device; set different spec.priority values ` +
            `(the higher wins) or make the selectors disjoint (other regions, or contradicting labels)`,
        });
      }
    }
  }
  return problems;
}

function suggest(word: string, names: ReadonlySet<string>): string {
  const match = closest(word, [...names]);
  return match ? ` (did you mean "${match}"?)` : '';
}

function where(source: DocSource): string {
  return `${source.path}:${source.line}:${source.col}`;
}

export function compareSources(a: DocSource, b: DocSource): number {
  if (a.path !== b.path) return a.path < b.path ? -1 : 1;
  return a.index - b.index;
}
