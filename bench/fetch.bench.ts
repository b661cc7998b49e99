import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openFleetSource } from '../src/source/open-fleet-source.js';
import { commitAndPush, git, makeFleetRemote, type FileChanges } from '../test/support/git-fixtures.js';
import { startGitHttpServer, type GitHttpServer } from '../test/support/git-http-server.js';
import { figure, type BenchFigure, type BenchSuite } from './types.js';

/**
 * Bytes on the wire for the regional reconciler's git source (isomorphic-git
 * over the real `git http-backend`), beside native `git fetch` on a clone of
 * the same repository, measured by the server in the same run:
 * - a poll with no new commit (goal < 1 KB);
 * - fetching a commit that changes 10 of 2,000 YAML files in nested folders (goal < 2x native).
 */
const REGIONS = 10;
const SITES = 10;
const APPS = 20; // 10 x 10 x 20 = 2,000 files
const ROUNDS = 3;

function deploymentYaml(region: number, site: number, app: number, version: string): string {
  return [
    'apiVersion: cascade/v1',
    'kind: Deployment',
    'metadata:',
    `  name: app-${app}-r${region}-s${site}`,
    `  labels: { region: region-${region}, site: site-${site} }`,
    'spec:',
    `  app: app-${app}`,
    `  version: ${version}`,
    '  selector:',
    '    matchLabels:',
    `      region: region-${region}`,
    `      site: site-${site}`,
    '  rollout:',
    '    waves: [canary, early, broad]',
    '    maxUnavailable: 10%',
    '',
  ].join('\n');
}

function fleetFiles(): FileChanges {
  const files: FileChanges = {};
  for (let r = 0; r < REGIONS; r++)
    for (let s = 0; s < SITES; s++)
      for (let a = 0; a < APPS; a++) files[`regions/region-${r}/site-${s}/app-${a}.yaml`] = deploymentYaml(r, s, a, '1.0.0');
  return files;
}

/** A rollout touching 10 files spread over different folders. */
function tenFileChange(round: number): FileChanges {
  const files: FileChanges = {};
  for (let i = 0; i < 10; i++) {
    const r = (i + round) % REGIONS;
    const s = (i * 3 + round) % SITES;
    const a = (i * 7 + round) % APPS;
    files[`regions/region-${r}/site-${s}/app-${a}.yaml`] = deploymentYaml(r, s, a, `2.${round}.${i}`);
  }
  return files;
}

async function measure(server: GitHttpServer, action: () => Promise<unknown>): Promise<number> {
  server.resetCounters();
  await action();
  return server.bytesSent();
}

async function run(): Promise<BenchFigure[]> {
  const base = await mkdtemp(join(tmpdir(), 'cascade-bench-fetch-'));
  const server = await startGitHttpServer({ root: join(base, 'repos') });
  try {
    const remote = await makeFleetRemote(join(base, 'repos'), 'fleet', fleetFiles());
    const url = `${server.url}/fleet.git`;

    const source = await openFleetSource({ repo: url, branch: 'main', dataDir: join(base, 'data') });
    const cloneBytes = await measure(server, () => source.sync());
    const native = join(base, 'native');
    const nativeCloneBytes = await measure(server, () => git(base, ['clone', '--quiet', '--no-checkout', url, native]));

    let noopBytes = 0;
    let nativeNoopBytes = 0;
    let fetchBytes = 0;
    let nativeFetchBytes = 0;
    for (let round = 0; round < ROUNDS; round++) {
      noopBytes += await measure(server, () => source.sync());
      nativeNoopBytes += await measure(server, () => git(native, ['fetch', '--quiet', 'origin']));

      const commit = await commitAndPush(remote.workdir, tenFileChange(round), `rollout ${round}`);
      fetchBytes += await measure(server, async () => {
        if ((await source.sync()) !== commit) throw new Error('cascade source did not fetch the new commit');
      });
      nativeFetchBytes += await measure(server, () => git(native, ['fetch', '--quiet', 'origin']));
      if ((await git(native, ['rev-parse', 'origin/main'])) !== commit) throw new Error('native git did not fetch the new commit');
    }
    await source.close();

    const noop = noopBytes / ROUNDS;
    const nativeNoop = nativeNoopBytes / ROUNDS;
    const incremental = fetchBytes / ROUNDS;
    const nativeIncremental = nativeFetchBytes / ROUNDS;
    return [
      figure('no-op poll, bytes from server', noop, 'B', '< 1 KB', noop < 1024, {
        name: 'native git fetch (no-op)',
        value: nativeNoop,
        unit: 'B',
      }),
      figure('fetch of a 10-file commit (2,000-file repo), bytes from server', incremental, 'B', '< 2x native git fetch', incremental < 2 * nativeIncremental, {
        name: 'native git fetch',
        value: nativeIncremental,
        unit: 'B',
      }),
      figure('first clone (2,000-file repo), bytes from server', cloneBytes, 'B', '< 1.5x native git clone', cloneBytes < 1.5 * nativeCloneBytes, {
        name: 'native git clone --no-checkout',
        value: nativeCloneBytes,
        unit: 'B',
      }),
    ];
  } finally {
    await server.stop();
    await rm(base, { recursive: true, force: true });
  }
}

export const suite: BenchSuite = { name: 'fetch', run };
