import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { BROKEN_DEPLOYMENT_PATH, BROKEN_DEPLOYMENT_YAML, DEMO_ROLLOUT, bumpDeploymentVersion, withDemoRollout } from '../../src/demo/fleet-edits.js';
import { formatProblem } from '../../src/desired/format-problem.js';
import { loadRepository } from '../../src/desired/load-repository.js';

const TEMPLATE = fileURLToPath(new URL('../../fleet-repo-template/', import.meta.url));
const read = (file: string) => fs.readFileSync(path.join(TEMPLATE, file), 'utf8');
const FILES = { deployment: 'deployments/sensor-agent.yaml', app: 'apps/sensor-agent.yaml' };

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

/** A copy of the template with some files replaced. */
function templateWith(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(tmpdir(), 'cascade-demo-edits-'));
  dirs.push(dir);
  fs.cpSync(TEMPLATE, dir, { recursive: true });
  for (const [file, content] of Object.entries(files)) fs.writeFileSync(path.join(dir, file), content);
  return dir;
}

/** Lines of `after` that are not in `before`, in order. */
function addedLines(before: string, after: string): string[] {
  const old = new Set(before.split('\n'));
  return after.split('\n').filter((line) => !old.has(line));
}

describe('withDemoRollout', () => {
  it('changes only the rollout values in fleet.yaml, keeping comments, and the fleet still loads', async () => {
    const before = read('fleet.yaml');
    const after = withDemoRollout(before);
    expect(parse(after).spec.rollout).toMatchObject({ ...DEMO_ROLLOUT, waves: [...DEMO_ROLLOUT.waves] });
    expect(after.split('\n')).toHaveLength(before.split('\n').length);
    expect(addedLines(before, after)).toEqual([
      '    waves: [10, 50, 100]   # cumulative % of a Deployment\'s devices per wave',
      '    maxUnavailable: "50%"     # at most this many devices updating or unhealthy at once',
      '    failureThreshold: "20%"    # halt the rollout when this share of attempts failed...',
      '    minSample: 5             # ...but only once at least this many devices were attempted',
      '    bakeTime: 3s             # wait after each wave before starting the next',
    ]);
    const { problems } = await loadRepository(templateWith({ 'fleet.yaml': after }));
    expect(problems).toEqual([]);
  });
});

describe('bumpDeploymentVersion', () => {
  it('moves sensor-agent to the next version and adds its artifact when the App has none', async () => {
    const bump = bumpDeploymentVersion(read(FILES.deployment), read(FILES.app), FILES);
    expect(bump).toMatchObject({ from: '2.5.0', to: '2.6.0' });
    expect(addedLines(read(FILES.deployment), bump.deploymentYaml)).toEqual(['  version: 2.6.0']);
    expect(bump.appYaml).not.toBeNull();
    const artifact = parse(bump.appYaml!).spec.artifacts['2.6.0'];
    expect(artifact).toEqual({ url: expect.stringContaining('/sensor-agent/2.6.0/'), sha256: expect.stringMatching(/^[0-9a-f]{64}$/), size: expect.any(Number) });
    // The other artifacts are untouched: the new entry is only added lines.
    expect(read(FILES.app).split('\n').every((line) => bump.appYaml!.split('\n').includes(line))).toBe(true);

    const { fleet, problems } = await loadRepository(templateWith({ [FILES.deployment]: bump.deploymentYaml, [FILES.app]: bump.appYaml! }));
    expect(problems).toEqual([]);
    expect(fleet.deployments.get('sensor-agent')!.spec.version).toBe('2.6.0');
  });

  it('picks the next version that already has an artifact and leaves the App alone', () => {
    const deployment = read(FILES.deployment).replace('version: 2.5.0', 'version: 2.3.0');
    const bump = bumpDeploymentVersion(deployment, read(FILES.app), FILES);
    expect(bump).toMatchObject({ from: '2.3.0', to: '2.4.1', appYaml: null });
  });
});

describe('the broken Deployment', () => {
  it('is refused with two located problems', async () => {
    const { problems } = await loadRepository(templateWith({ [BROKEN_DEPLOYMENT_PATH]: BROKEN_DEPLOYMENT_YAML }));
    const lines = problems.map(formatProblem);
    expect(lines).toHaveLength(2);
    expect(lines.find((l) => l.includes('no App named "camera-agent"'))).toMatch(/^deployments\/camera-agent\.yaml:6:8: /);
    expect(lines.find((l) => l.includes('unknown field "rolout"'))).toMatch(/^deployments\/camera-agent\.yaml:22:3: /);
  });
});
