import { createHash } from 'node:crypto';
import { stableJson } from '../../core/stable-json.js';
import type { DeploymentSpec } from '../../desired/model.js';

export { stableJson } from '../../core/stable-json.js';

/**
 * Identifies what a Deployment asks for and how: app, version, selector and its own rollout settings
 * (not the Region's or Fleet's defaults, so editing a default does not restart every rollout). A
 * different fingerprint means a commit changed the Deployment: its rollout starts a fresh state,
 * which is what lifts a halt. Key order and absent-vs-undefined fields do not matter. `paused` and
 * `onHalt` are left out: a pause keeps the rollout's place, and resuming continues it.
 */
export function deploymentFingerprint(spec: DeploymentSpec): string {
  // Pausing, resuming and choosing what happens on a halt steer the rollout under way; they do not start another.
  // An empty rollout block (or one holding only these) reads as none: `cascade rollout pause` may add the block.
  let rollout: Record<string, unknown> | null = null;
  if (spec.rollout) {
    const { paused: _paused, onHalt: _onHalt, ...rest } = spec.rollout;
    if (Object.values(rest).some((v) => v !== undefined)) rollout = rest;
  }
  const json = stableJson({ app: spec.app, version: spec.version, selector: spec.selector ?? null, rollout });
  return createHash('sha256').update(json).digest('hex');
}
