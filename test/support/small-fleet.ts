import type { FileChanges } from './git-fixtures.js';

export interface SmallFleetOptions {
  region?: string;
  /** Version of the `web` Deployment. */
  web?: string;
  /** Version of the `db` Deployment; no db Deployment when null. */
  db?: string | null;
  /** YAML lines of the Fleet's spec.rollout, indented by 4 spaces. */
  rollout?: string;
}

/** A small fleet repository for end-to-end tests: apps web and db, one region, fast rollouts by default. */
export function smallFleet(options: SmallFleetOptions = {}): FileChanges {
  const region = options.region ?? 'us-east';
  const rollout = options.rollout ?? '    waves: [100]\n';
  const files: FileChanges = {
    'fleet.yaml': `apiVersion: cascade/v1\nkind: Fleet\nmetadata:\n  name: test-fleet\nspec:\n  rollout:\n${rollout}`,
    'regions/region.yaml': `apiVersion: cascade/v1\nkind: Region\nmetadata:\n  name: ${region}\n`,
    'apps/web.yaml': 'apiVersion: cascade/v1\nkind: App\nmetadata:\n  name: web\n',
    'apps/db.yaml': 'apiVersion: cascade/v1\nkind: App\nmetadata:\n  name: db\n',
    'deployments/web.yaml': webDeployment(options.web ?? '1.0.0'),
  };
  files['deployments/db.yaml'] = options.db === null ? null : dbDeployment(options.db ?? '5.0.0');
  return files;
}

export function webDeployment(version: string, extra = ''): string {
  return `apiVersion: cascade/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  app: web\n  version: ${version}\n${extra}`;
}

export function dbDeployment(version: string): string {
  return `apiVersion: cascade/v1\nkind: Deployment\nmetadata:\n  name: db\nspec:\n  app: db\n  version: ${version}\n  selector:\n    matchLabels:\n      role: storage\n`;
}
