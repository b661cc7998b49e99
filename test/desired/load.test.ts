import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FleetLoader } from '../../src/desired/load.js';
import { SqliteParseCache } from '../../src/desired/parse-cache.js';
import { formatProblem } from '../../src/desired/format-problem.js';
import { APP, DEPLOYMENT, REGION, memorySnapshot } from './memory-snapshot.js';

const tempDirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'cascade-load-'));
  tempDirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function fleetFiles(count: number): Record<string, string> {
  const files: Record<string, string> = { 'regions.yaml': REGION('eu') + '---\n' + REGION('us') };
  for (let i = 0; i < count; i++) {
    files[`apps/app-${i}.yaml`] = APP(`app-${i}`);
    files[`deployments/app-${i}.yaml`] = DEPLOYMENT(`app-${i}`, `app-${i}`, '1.0.0', '  selector:\n    regions: [eu]\n');
  }
  return files;
}

describe('FleetLoader', () => {
  it('loads every kind into the fleet, with sources and the snapshot revision', async () => {
    const { fleet, problems, stats } = await new FleetLoader().load(memorySnapshot(fleetFiles(2), 'abc123'));
    expect(problems).toEqual([]);
    expect(fleet.revision).toBe('abc123');
    expect([...fleet.apps.keys()]).toEqual(['app-0', 'app-1']);
    expect([...fleet.deployments.keys()]).toEqual(['app-0', 'app-1']);
    expect([...fleet.regions.keys()]).toEqual(['eu', 'us']);
    expect(fleet.sources.get('Region/us')).toEqual({ path: 'regions.yaml', index: 1, line: 6, col: 1 });
    expect(fleet.sources.get('Deployment/app-1')).toEqual({ path: 'deployments/app-1.yaml', index: 0, line: 1, col: 1 });
    expect(stats).toEqual({ files: 5, parsed: 5, cached: 0 });
  });

  it('gives every document a spec and freezes documents, which later loads share', async () => {
    const { fleet } = await new FleetLoader().load(memorySnapshot({ 'a.yaml': APP('bare') }));
    const app = fleet.apps.get('bare')!;
    expect(app.spec).toEqual({});
    expect(() => {
      (app.metadata as { name: string }).name = 'changed';
    }).toThrow(TypeError);
  });

  it('re-parses only the file that changed between two snapshots', async () => {
    const loader = new FleetLoader();
    const files = fleetFiles(20);
    const first = await loader.load(memorySnapshot(files, 'r1'));
    expect(first.stats).toEqual({ files: 41, parsed: 41, cached: 0 });

    files['deployments/app-7.yaml'] = DEPLOYMENT('app-7', 'app-7', '1.1.0', '  selector:\n    regions: [eu]\n');
    const second = memorySnapshot(files, 'r2');
    const result = await loader.load(second);
    expect(result.stats).toEqual({ files: 41, parsed: 1, cached: 40 });
    expect(second.reads).toEqual(['deployments/app-7.yaml']);
    expect(result.fleet.deployments.get('app-7')!.spec.version).toBe('1.1.0');
    expect(result.fleet.revision).toBe('r2');
  });

  it('remembers the two latest snapshots, so going back to the previous revision parses nothing', async () => {
    const loader = new FleetLoader();
    const before = fleetFiles(3);
    const after = { ...before, 'apps/app-1.yaml': APP('app-1', 'spec:\n  description: changed\n') };
    await loader.load(memorySnapshot(before));
    expect((await loader.load(memorySnapshot(after))).stats.parsed).toBe(1);
    expect((await loader.load(memorySnapshot(before))).stats.parsed).toBe(0);
  });

  it('parses nothing after a restart with a warm disk cache', async () => {
    const dir = tempDir();
    const files = fleetFiles(10);
    const cache = SqliteParseCache.inDir(dir);
    const cold = await new FleetLoader({ cache }).load(memorySnapshot(files));
    cache.close();
    expect(cold.stats.parsed).toBe(21);

    const reopened = SqliteParseCache.inDir(dir);
    const snapshot = memorySnapshot(files);
    const warm = await new FleetLoader({ cache: reopened }).load(snapshot);
    reopened.close();
    expect(warm.stats).toEqual({ files: 21, parsed: 0, cached: 21 });
    expect(snapshot.reads).toEqual([]);
    expect(warm.problems).toEqual([]);
    expect(warm.fleet.deployments).toEqual(cold.fleet.deployments);
    expect(warm.fleet.sources).toEqual(cold.fleet.sources);
  });

  it('caches only files that parsed cleanly, and still locates problems in cached files', async () => {
    const dir = tempDir();
    const files = {
      'apps.yaml': APP('web') + '---\n' + APP('db'),
      'broken.yaml': 'a: [1\n',
      // Parses cleanly (so it is cached) but names an unknown app and has a schema violation.
      'deploy.yaml': DEPLOYMENT('web', 'web', '1') + '---\n' + DEPLOYMENT('api', 'apii', '2', '  priority: "high"\n'),
    };
    const cache = SqliteParseCache.inDir(dir);
    const first = await new FleetLoader({ cache }).load(memorySnapshot(files));
    cache.close();
    const reopened = SqliteParseCache.inDir(dir);
    const second = await new FleetLoader({ cache: reopened }).load(memorySnapshot(files));
    reopened.close();
    expect(second.problems).toEqual(first.problems);
    expect(second.problems.map(formatProblem)).toEqual([
      'broken.yaml:2:1: Flow sequence in block collection must be sufficiently indented and end with a ]',
      'deploy.yaml:16:13: spec.priority must be an integer, not "high"',
    ]);
    // broken.yaml was not cached; deploy.yaml was, but its schema problem needs a position, so it is parsed again.
    expect(second.stats).toEqual({ files: 3, parsed: 2, cached: 2 });
  });

  it('points at the node of a problem between documents, also when the file came from the cache', async () => {
    const files = { 'apps.yaml': APP('web'), 'deploy.yaml': '# leading comment\n' + DEPLOYMENT('web', 'wbe', '1') };
    const loader = new FleetLoader();
    const first = await loader.load(memorySnapshot(files));
    const second = await loader.load(memorySnapshot(files));
    for (const { problems } of [first, second]) {
      expect(problems.map(formatProblem)).toEqual([
        'deploy.yaml:7:8: Deployment "web" deploys app "wbe", but there is no App named "wbe" (did you mean "web"?); add an App document or fix spec.app',
      ]);
    }
    expect(second.stats.parsed).toBe(0);
    expect(second.fleet.deployments.size).toBe(0);
  });

  it('reports duplicate names across files at both places, also for files with equal content', async () => {
    const { problems, fleet } = await new FleetLoader().load(
      memorySnapshot({ 'a/region.yaml': REGION('eu'), 'b/region.yaml': REGION('eu'), 'c.yaml': APP('eu') }),
    );
    expect(problems.map(formatProblem)).toEqual([
      'a/region.yaml:4:9: Region "eu" is defined more than once (also at b/region.yaml:1:1); names must be unique per kind, rename or remove one',
      'b/region.yaml:4:9: Region "eu" is defined more than once (also at a/region.yaml:1:1); names must be unique per kind, rename or remove one',
    ]);
    expect(fleet.regions.size).toBe(0);
    expect(fleet.apps.has('eu')).toBe(true);
  });

  it('counts names of invalid documents as known, and leaves out Deployments of left-out Apps without extra noise', async () => {
    const { problems, fleet } = await new FleetLoader().load(
      memorySnapshot({ 'app.yaml': APP('web', 'spec:\n  runtime: {type: exec}\n'), 'deploy.yaml': DEPLOYMENT('web', 'web', '1') }),
    );
    expect(problems.map((p) => p.code)).toEqual(['schema']);
    expect(fleet.apps.size).toBe(0);
    expect(fleet.deployments.size).toBe(0);
  });

  it('sorts problems by path, line and column', async () => {
    const { problems } = await new FleetLoader().load(
      memorySnapshot({ 'z.yaml': 'a: [\n', 'a.yaml': 'kind: App\n---\nkind: Nope\napiVersion: cascade/v1\n', 'm.yaml': '- 1\n' }),
    );
    expect(problems.map((p) => `${p.path}:${p.line}`)).toEqual(['a.yaml:1', 'a.yaml:3', 'm.yaml:1', 'z.yaml:2']);
  });

  it('turns a file that cannot be read into a problem', async () => {
    const snapshot = memorySnapshot({ 'a.yaml': APP('x') });
    snapshot.files[0]!.read = async () => {
      throw new Error('object 1234 is missing');
    };
    const loader = new FleetLoader();
    const { problems } = await loader.load(snapshot);
    expect(problems.map(formatProblem)).toEqual(['a.yaml:1:1: cannot be read: object 1234 is missing']);
    // Not remembered: the next load tries again.
    const retry = await loader.load(memorySnapshot({ 'a.yaml': APP('x') }));
    expect(retry.problems).toEqual([]);
    expect(retry.stats.parsed).toBe(1);
  });
});
