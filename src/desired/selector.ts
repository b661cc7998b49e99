import type { Labels } from '../core/types.js';
import type { LabelSelectorRequirement, Selector } from './model.js';

/** Does a device in `region` with `labels` fall under `selector`? An empty selector selects every device. */
export function matchesSelector(selector: Selector | undefined, region: string, labels: Labels): boolean {
  if (!selector) return true;
  if (selector.regions && !selector.regions.includes(region)) return false;
  if (selector.matchLabels) {
    for (const key in selector.matchLabels) {
      if (!Object.hasOwn(labels, key) || labels[key] !== selector.matchLabels[key]) return false;
    }
  }
  if (selector.matchExpressions) {
    for (const requirement of selector.matchExpressions) {
      if (!matchesRequirement(requirement, labels)) return false;
    }
  }
  return true;
}

function matchesRequirement(requirement: LabelSelectorRequirement, labels: Labels): boolean {
  const present = Object.hasOwn(labels, requirement.key);
  switch (requirement.operator) {
    case 'Exists':
      return present;
    case 'DoesNotExist':
      return !present;
    case 'In':
      return present && (requirement.values ?? []).includes(labels[requirement.key]!);
    case 'NotIn':
      return !present || !(requirement.values ?? []).includes(labels[requirement.key]!);
  }
}

/**
 * Can no device match both selectors? True only when provably disjoint:
 * different regions, or label constraints that contradict each other.
 * Used to reject equal-priority Deployments of one app that might select the same device.
 */
export function selectorsAreDisjoint(a: Selector | undefined, b: Selector | undefined): boolean {
  if (a?.regions && b?.regions && !a.regions.some((r) => b.regions!.includes(r))) return true;
  const constraints = new Map<string, { allowed: Set<string> | null; forbidden: Set<string>; mustExist: boolean; mustNotExist: boolean }>();
  const constraintFor = (key: string) => {
    let c = constraints.get(key);
    if (!c) {
      c = { allowed: null, forbidden: new Set(), mustExist: false, mustNotExist: false };
      constraints.set(key, c);
    }
    return c;
  };
  const allow = (key: string, values: string[]) => {
    const c = constraintFor(key);
    c.mustExist = true;
    c.allowed = c.allowed ? new Set([...c.allowed].filter((v) => values.includes(v))) : new Set(values);
  };
  for (const selector of [a, b]) {
    if (!selector) continue;
    for (const key in selector.matchLabels ?? {}) allow(key, [selector.matchLabels![key]!]);
    for (const requirement of selector.matchExpressions ?? []) {
      const c = constraintFor(requirement.key);
      if (requirement.operator === 'In') allow(requirement.key, requirement.values ?? []);
      else if (requirement.operator === 'NotIn') for (const v of requirement.values ?? []) c.forbidden.add(v);
      else if (requirement.operator === 'Exists') c.mustExist = true;
      else c.mustNotExist = true;
    }
  }
  for (const c of constraints.values()) {
    if (c.mustExist && c.mustNotExist) return true;
    if (c.allowed && [...c.allowed].every((v) => c.forbidden.has(v))) return true;
  }
  return false;
}
