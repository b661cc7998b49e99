import { createHash } from 'node:crypto';
import { stableJson } from '../../core/stable-json.js';
import type { DeploymentSpec } from '../../desired/model.js';

export { stableJson } from '../../core/stable-json.js';

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
