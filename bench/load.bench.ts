import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import git from 'isomorphic-git';
import fs from 'node:fs';
import { FleetLoader } from '../src/desired/load.js';
import { SqliteParseCache } from '../src/desired/parse-cache.js';
import { parseYamlBytes } from '../src/desired/parse-yaml.js';
import { readGitSnapshot, type GitSnapshotState } from '../src/source/git-snapshot.js';
import { figure, type BenchFigure, type BenchSuite } from './types.js';

/**
 * Loading a 10,000-file fleet repository from git: cold (every blob read and parsed once),
 * incremental (one file changed, loader kept) and restart (new process, warm disk cache).
 */
const TEAMS = 50;
const APPS_PER_TEAM = 40;
const DEPLOYMENTS_PER_APP = 4;
const REGIONS = Array.from({ length: 10 }, (_, i) => `region-${i}`);
const INCREMENTAL_ROUNDS = 5;

const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 'Bench',
  GIT_AUTHOR_EMAIL: 'bench@example.com',
  GIT_COMMITTER_NAME: 'Bench',
  GIT_COMMITTER_EMAIL: 'bench@example.com',
  GIT_CONFIG_NOSYSTEM: '1',
  HOME: tmpdir(),
};

export const suite: BenchSuite = {
  name: 'load',
  async run(): Promise<BenchFigure[]> {
    const root = mkdtempSync(join(tmpdir(), 'cascade-bench-load-'));
    try {
      return await measure(root);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  },
};

async function measure(root: string): Promise<BenchFigure[]> {
  const repo = join(root, 'fleet');
  const cacheDir = join(root, 'cache');
  const files = generateFleet();
  writeRepo(repo, files);
  const gitRun = (...args: string[]) => execFileSync('git', args, { cwd: repo, env: GIT_ENV, encoding: 'utf8' }).trim();
  gitRun('init', '-q', '-b', 'main');
  // No background auto-gc racing the measurements; pack everything once, as a clone would be.
  gitRun('config', 'gc.auto', '0');
  gitRun('add', '-A');
  gitRun('commit', '-q', '-m', 'fleet of 10,000 files');
  gitRun('gc', '-q');
  const fileCount = Object.keys(files).length;
  process.stderr.write(`  generated ${fileCount} files (${(totalBytes(files) / 1e6).toFixed(1)} MB) in a git repository\n`);

  // Baselines: what reading alone costs, and what parsing the same data as JSON costs.
  const { snapshot: listing } = await readGitSnapshot({ dir: repo, ref: 'main' });
  const readAllMs = await timed(async () => {
    const gitCache = {};
    let next = 0;
    // As many reads in flight as the loader keeps.
    const worker = async () => {
      while (next < listing.files.length) await git.readBlob({ fs, dir: repo, oid: listing.files[next++]!.id, cache: gitCache });
    };
    await Promise.all(Array.from({ length: 16 }, worker));
  });
  const contents = listing.files.map((f) => new TextEncoder().encode(files[f.path]!));
  const jsonTexts = contents.map((bytes) => JSON.stringify(parseYamlBytes(bytes).documents.map((d) => d.value)));
  const jsonParseMs = timedSync(() => {
    for (const text of jsonTexts) JSON.parse(text);
  });
  const yamlParseMs = timedSync(() => {
    for (const bytes of contents) parseYamlBytes(bytes);
  });

  // Cold: fresh loader, empty disk cache, snapshot without previous state.
  const cache = SqliteParseCache.inDir(cacheDir);
  const loader = new FleetLoader({ cache });
  let state: GitSnapshotState | undefined;
  const coldMs = await timed(async () => {
    const read = await readGitSnapshot({ dir: repo, ref: 'main' });
    state = read.state;
    const result = await loader.load(read.snapshot);
    expectClean(result.problems.length, result.stats.parsed === fileCount, 'cold');
  });

  // Incremental: one commit changes one Deployment's version; the loader and snapshot state are kept.
  const incrementalRuns: number[] = [];
  for (let round = 0; round < INCREMENTAL_ROUNDS; round++) {
    const path = `teams/team-${String(round * 7).padStart(2, '0')}/deployments/app-${round * 7}-3-region-3.yaml`;
    writeFileSync(join(repo, path), files[path]!.replace('version: "1.1.0"', 'version: "1.2.0"'));
    gitRun('commit', '-q', '-a', '-m', `roll out ${path}`);
    incrementalRuns.push(
      await timed(async () => {
        const read = await readGitSnapshot({ dir: repo, ref: 'main', previous: state });
        state = read.state;
        const result = await loader.load(read.snapshot);
        expectClean(result.problems.length, result.stats.parsed === 1, 'incremental');
      }),
    );
  }
  cache.close();
  const incrementalMs = median(incrementalRuns);

  // Restart: a new process would have no loader memory and no snapshot state, only the disk cache.
  const restartRuns: number[] = [];
  for (let round = 0; round < 3; round++) {
    restartRuns.push(
      await timed(async () => {
        const reopened = SqliteParseCache.inDir(cacheDir);
        const read = await readGitSnapshot({ dir: repo, ref: 'main' });
        const result = await new FleetLoader({ cache: reopened }).load(read.snapshot);
        reopened.close();
        expectClean(result.problems.length, result.stats.parsed === 0, 'restart');
      }),
    );
  }
  const restartMs = median(restartRuns);

  const cold = { name: 'cold load', value: coldMs, unit: 'ms' };
  return [
    figure(`cold load, ${fileCount} files (read + parse + validate + cache)`, coldMs, 'ms', 'cold load < 2x reading every blob', coldMs < 2 * readAllMs, {
      name: 'isomorphic-git readBlob of every file (packed, 16 in flight)',
      value: readAllMs,
      unit: 'ms',
    }),
    figure(`YAML parse of ${fileCount} files (limits + AST + toJS)`, yamlParseMs, 'ms', 'informational: YAML parse cost vs JSON.parse', true, {
      name: 'JSON.parse of the same documents',
      value: jsonParseMs,
      unit: 'ms',
    }),
    figure(`incremental load, 1 file changed (median of ${INCREMENTAL_ROUNDS})`, incrementalMs, 'ms', 'incremental < 5% of cold', incrementalMs < 0.05 * coldMs, cold),
    figure('restart with warm disk cache (median of 3)', restartMs, 'ms', 'restart < 5% of cold', restartMs < 0.05 * coldMs, cold),
  ];
}

function generateFleet(): Record<string, string> {
  const files: Record<string, string> = {
    'regions.yaml': REGIONS.map((r) => regionDoc(r)).join('---\n'),
    'fleet.yaml': fleetDoc(),
  };
  let count = Object.keys(files).length;
  for (let t = 0; t < TEAMS; t++) {
    const team = `team-${String(t).padStart(2, '0')}`;
    for (let a = 0; a < APPS_PER_TEAM; a++) {
      const app = `app-${t}-${a}`;
      files[`teams/${team}/apps/${app}.yaml`] = appDoc(app, team);
      count++;
      for (let d = 0; d < DEPLOYMENTS_PER_APP && count < 10_000; d++) {
        const region = REGIONS[(a + d) % REGIONS.length]!;
        files[`teams/${team}/deployments/${app}-${region}.yaml`] = deploymentDoc(app, region, team);
        count++;
      }
    }
  }
  return files;
}

function hex(seed: string): string {
  let h = 0;
  let out = '';
  for (let i = 0; out.length < 64; i++) {
    h = (h * 31 + seed.charCodeAt(i % seed.length) + i) >>> 0;
    out += h.toString(16).padStart(8, '0');
  }
  return out.slice(0, 64);
}

function appDoc(app: string, team: string): string {
  const artifact = (v: string) =>
    `    "${v}":\n      url: https://artifacts.example.com/${team}/${app}/${v}/${app}-${v}-linux-arm64.tar.gz\n      sha256: ${hex(app + v)}\n      size: ${1_000_000 + app.length * 1000}\n`;
  return `apiVersion: cascade/v1
kind: App
metadata:
  name: ${app}
  labels:
    team: ${team}
    tier: edge
spec:
  description: ${app} collects and forwards site telemetry for ${team}
  runtime:
    type: exec
    install: /opt/cascade/bin/install-tarball {artifact} /opt/${app}/{version}
    start: systemctl start ${app}
    stop: systemctl stop ${app}
  artifacts:
${['1.0.0', '1.1.0', '1.2.0'].map(artifact).join('')}  healthCheck:
    exec: /opt/${app}/current/bin/healthcheck --quiet
    timeout: 15s
    retries: 3
`;
}

function deploymentDoc(app: string, region: string, team: string): string {
  return `# Owned by ${team}. A rollout is a commit that changes spec.version.
apiVersion: cascade/v1
kind: Deployment
metadata:
  name: ${app}-${region}
  labels:
    team: ${team}
    app: ${app}
spec:
  app: ${app}
  version: "1.1.0"
  priority: 0
  selector:
    regions: [${region}]
    matchExpressions:
      - key: hardware
        operator: In
        values: [rpi4, rpi5, nuc]
      - key: decommissioned
        operator: DoesNotExist
  rollout:
    waves: [1, 10, 50, 100]
    maxUnavailable: 10%
    failureThreshold: 5%
    minSample: 20
    bakeTime: 15m
    window:
      schedule: "0 2 * * *"
      duration: 3h
      timezone: Europe/Berlin
`;
}

function regionDoc(name: string): string {
  return `apiVersion: cascade/v1
kind: Region
metadata:
  name: ${name}
spec:
  description: Devices of ${name}
  labels:
    region: ${name}
`;
}

function fleetDoc(): string {
  return `apiVersion: cascade/v1
kind: Fleet
metadata:
  name: bench
spec:
  rollout:
    waves: [1, 10, 50, 100]
    bakeTime: 10m
    offlineAfter: 1h
`;
}

function writeRepo(dir: string, files: Record<string, string>): void {
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
}

function totalBytes(files: Record<string, string>): number {
  return Object.values(files).reduce((sum, c) => sum + Buffer.byteLength(c), 0);
}

function expectClean(problems: number, statsOk: boolean, phase: string): void {
  if (problems !== 0 || !statsOk) throw new Error(`bench fleet did not load as expected in the ${phase} phase (${problems} problems)`);
}

async function timed(work: () => Promise<void>): Promise<number> {
  const start = performance.now();
  await work();
  return performance.now() - start;
}

function timedSync(work: () => void): number {
  const start = performance.now();
  work();
  return performance.now() - start;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}
