// Profiles reconcile passes in process (no HTTP, no broker): `node --import tsx bench/support/pass-profile.ts 10000`
// prints the cost of an idle pass, a pass after one report, a commit pass and a pass during a rollout,
// and the longest stalls of the event loop during the commit pass and the rollout passes (a 2 ms timer's
// gaps: what a device's report or a status request would wait at worst).
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { FleetLoader } from '../../src/desired/load.js';
import { FleetIndex } from '../../src/reconciler/fleet-index.js';
import { Reconciler } from '../../src/reconciler/reconciler.js';
import { createRegionMetrics } from '../../src/reconciler/region-metrics.js';
import { openFleetSource } from '../../src/source/open-fleet-source.js';
import { SqliteStateStore } from '../../src/storage/region-state-store.js';
import { commitFiles, makeLocalRepo } from '../../test/support/git-fixtures.js';
import { smallFleet, webDeployment } from '../../test/support/small-fleet.js';

const N = Number(process.argv[2] ?? 10000);
const gaps: number[] = [];
let lastTick = performance.now();
setInterval(() => {
  const at = performance.now();
  gaps.push(at - lastTick);
  lastTick = at;
}, 2).unref();
/** The longest event-loop stalls since the last call, longest first. */
const stalls = (label: string): void => {
  const longest = gaps.sort((a, b) => b - a).slice(0, 5).map((g) => g.toFixed(0));
  console.log(label, 'longest event-loop stalls (ms):', longest.join(' '));
  gaps.length = 0;
  lastTick = performance.now();
};
const dir = await mkdtemp(join(tmpdir(), 'pass-prof-'));
const repo = join(dir, 'fleet');
await makeLocalRepo(repo, smallFleet({ region: 'us-east', web: '1.0.0', db: null }));
let now = Date.now();
const clock = () => now;
const log = pino({ level: 'silent' });
const durable = SqliteStateStore.open(join(dir, 'data'));
const index = new FleetIndex({ durable, clock, offlineAfterMs: () => 600000, log });
const source = await openFleetSource({ repo, branch: 'main', dataDir: join(dir, 'data'), log });
const metrics = createRegionMetrics('us-east');
const reconciler = new Reconciler({ region: 'us-east', source, store: index, loader: new FleetLoader({}), clock, log, metrics, onHandOut: () => {} });
await reconciler.runPass({ fetch: true, reason: 'start' });
let t = performance.now();
for (let i = 0; i < N; i++) index.enrollDevice(`d-${i}`, {}, String(i).padStart(64, '0'), now);
console.log('enrol', (performance.now() - t).toFixed(0));
for (let i = 0; i < N; i++) index.recordReport(`d-${i}`, { web: { version: '1.0.0', state: 'healthy' } }, now);
t = performance.now();
await reconciler.runPass({ fetch: false, reason: 'x' });
console.log('first pass', (performance.now() - t).toFixed(0));
const time = async (label: string, f: () => void) => {
  const s = performance.now();
  for (let k = 0; k < 20; k++) { f(); await reconciler.runPass({ fetch: false, reason: 'x' }); }
  console.log(label, ((performance.now() - s) / 20).toFixed(2), 'ms/pass');
};
await time('idle pass', () => { now += 10; });
await time('one report pass', () => { now += 10; index.recordReport('d-5', { web: { version: '1.0.0', state: 'healthy' } }, now); });
await commitFiles(repo, { 'deployments/web.yaml': webDeployment('2.0.0') }, 'v2');
index.flush();
await new Promise((resolve) => setTimeout(resolve, 20));
gaps.length = 0;
lastTick = performance.now();
t = performance.now();
await reconciler.runPass({ fetch: true, reason: 'commit' });
console.log('commit pass', (performance.now() - t).toFixed(0));
stalls('commit pass:');
await time('rollout report pass', () => { now += 10; index.recordReport(`d-${Math.floor(Math.random()*N)}`, { web: { version: '2.0.0', state: 'healthy' } }, now); });
stalls('rollout passes:');
t = performance.now();
for (let k = 0; k < 20; k++) index.deviceCounts();
console.log('status', ((performance.now() - t) / 20).toFixed(3));
process.exit(0);
