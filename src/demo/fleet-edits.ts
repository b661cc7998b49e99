import { createHash } from 'node:crypto';
import { isMap, isScalar, isSeq, parseDocument, type Document } from 'yaml';
import { CascadeError } from '../core/errors.js';
import { compareVersions, parseVersion } from '../core/version.js';

/**
 * The edits the demo commits to its fleet repository, as an operator would make them by hand:
 * each changes only the values it must, so the commit's diff is the few lines a reviewer expects.
 */

/** Rollout pace of the demo: visible waves within seconds instead of the template's production pace. */
export const DEMO_ROLLOUT = {
  waves: [10, 50, 100],
  maxUnavailable: '50%',
  failureThreshold: '20%',
  minSample: 5,
  bakeTime: '3s',
  rollback: 'immediate',
} as const;

type Value = string | number | readonly number[];

/** fleet.yaml with the Fleet's rollout defaults set to DEMO_ROLLOUT. */
export function withDemoRollout(fleetYaml: string): string {
  let text = fleetYaml;
  for (const [field, value] of Object.entries(DEMO_ROLLOUT)) text = setValue(text, ['spec', 'rollout', field], value, 'fleet.yaml');
  return text;
}

export interface VersionBump {
  deploymentYaml: string;
  /** The App file with an artifact for `to` added; null when it already had one. */
  appYaml: string | null;
  from: string;
  to: string;
}

/**
 * Moves a Deployment to the next version its App has an artifact for. When there is none, picks the
 * next minor version and adds an artifact entry for it to the App in the same commit, as a release
 * would. The demo's devices are simulated: they never download it.
 */
export function bumpDeploymentVersion(deploymentYaml: string, appYaml: string, files: { deployment: string; app: string }): VersionBump {
  const deployment = parse(deploymentYaml, files.deployment);
  const from = deployment.getIn(['spec', 'version']);
  if (typeof from !== 'string') {
    throw new CascadeError('demo-template-changed', `${files.deployment}: spec.version is missing or not a string; the demo expects the template's sensor-agent Deployment`);
  }
  const app = parse(appYaml, files.app);
  const artifacts = app.getIn(['spec', 'artifacts'], true);
  const published = isMap(artifacts) ? artifacts.items.map((pair) => String(isScalar(pair.key) ? pair.key.value : pair.key)) : [];
  const newer = published.filter((version) => compareVersions(version, from) > 0).sort(compareVersions);
  const to = newer[0] ?? nextMinor(from);
  return {
    deploymentYaml: setValue(deploymentYaml, ['spec', 'version'], to, files.deployment),
    appYaml: newer[0] ? null : addArtifact(appYaml, app, to, files.app),
    from,
    to,
  };
}

/**
 * A commit the region must refuse: a Deployment of an App that is not in the repository (its App file
 * was forgotten), and a second Deployment with a misspelt field.
 */
export const BROKEN_DEPLOYMENT_PATH = 'deployments/camera-agent.yaml';
export const BROKEN_DEPLOYMENT_YAML = `apiVersion: cascade/v1
kind: Deployment
metadata:
  name: camera-agent
spec:
  app: camera-agent
  version: 1.0.0
  selector:
    regions: [us-east]
---
apiVersion: cascade/v1
kind: Deployment
metadata:
  name: camera-agent-lab
spec:
  app: camera-agent
  version: 1.1.0-rc.1
  priority: 100
  selector:
    matchLabels:
      ring: lab
  rolout:
    waves: [100]
`;

function nextMinor(version: string): string {
  const parsed = parseVersion(version);
  if (!parsed) throw new CascadeError('demo-template-changed', `cannot pick a version after "${version}": it is not a version number`);
  const [major = '0', minor = '0'] = parsed.release;
  return `${major}.${Number(minor) + 1}.0`;
}

function parse(text: string, file: string): Document {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) throw new CascadeError('demo-template-changed', `${file}: ${doc.errors[0]!.message}`);
  return doc;
}

/**
 * Replaces the value at `path` in place, keeping every other byte of the file (comments, quoting,
 * layout). When the key is absent, it is added and the file re-serialised.
 */
function setValue(text: string, path: string[], value: Value, file: string): string {
  const doc = parse(text, file);
  const node = doc.getIn(path, true);
  if ((isScalar(node) || isSeq(node)) && node.range) {
    const quoted = isScalar(node) && (node.type === 'QUOTE_DOUBLE' || node.type === 'QUOTE_SINGLE');
    const rendered = Array.isArray(value)
      ? `[${value.join(', ')}]`
      : typeof value === 'string' && (quoted || needsQuotes(value))
        ? JSON.stringify(value)
        : String(value);
    return text.slice(0, node.range[0]) + rendered + text.slice(node.range[1]);
  }
  doc.setIn(path, Array.isArray(value) ? doc.createNode(value, { flow: true }) : value);
  return doc.toString({ lineWidth: 0, flowCollectionPadding: false });
}

/** A plain scalar that YAML would read as something other than this string. */
function needsQuotes(value: string): boolean {
  return parseDocument(value).toJS() !== value;
}

function addArtifact(text: string, app: Document, version: string, file: string): string {
  const name = String(app.getIn(['metadata', 'name']) ?? 'app');
  const artifact = {
    url: `https://artifacts.example.com/${name}/${version}/${name}-${version}.tar.gz`,
    sha256: createHash('sha256').update(`${name}-${version}.tar.gz`).digest('hex'),
    size: 16252928,
  };
  const artifacts = app.getIn(['spec', 'artifacts'], true);
  const first = isMap(artifacts) ? artifacts.items[0]?.key : undefined;
  if (isMap(artifacts) && !artifacts.flow && artifacts.range && isScalar(first) && first.range) {
    const keyStart = first.range[0];
    const indent = ' '.repeat(keyStart - text.lastIndexOf('\n', keyStart - 1) - 1);
    const end = artifacts.range[1];
    const entry =
      `${indent}"${version}":\n` +
      `${indent}  url: ${artifact.url}\n` +
      `${indent}  sha256: ${artifact.sha256}\n` +
      `${indent}  size: ${artifact.size}\n`;
    const before = text.slice(0, end);
    return before + (before.endsWith('\n') ? '' : '\n') + entry + text.slice(end);
  }
  const doc = parse(text, file);
  doc.setIn(['spec', 'artifacts', version], artifact);
  return doc.toString({ lineWidth: 0, flowCollectionPadding: false });
}
