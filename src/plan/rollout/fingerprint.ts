import { createHash } from 'node:crypto';
import type { DeploymentSpec } from '../../desired/model.js';

/**
 * Identifies what a Deployment asks for and how: app, version, selector and its own rollout settings
 * (not the Region's or Fleet's defaults, so editing a default does not restart every rollout). A
 * different fingerprint means a commit changed the Deployment: its rollout starts a fresh state,
 * which is what lifts a halt. Key order and absent-vs-undefined fields do not matter.
 */
export function deploymentFingerprint(spec: DeploymentSpec): string {
  const json = stableJson({ app: spec.app, version: spec.version, selector: spec.selector ?? null, rollout: spec.rollout ?? null });
  return createHash('sha256').update(json).digest('hex');
}

/** JSON with object keys sorted at every level and undefined-valued keys left out. */
export function stableJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  const entries = Object.keys(value)
    .filter((key) => (value as Record<string, unknown>)[key] !== undefined)
    .sort()
    .map((key) => `${JSON.stringify(key)}:${stableJson((value as Record<string, unknown>)[key])}`);
  return `{${entries.join(',')}}`;
}
