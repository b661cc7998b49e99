// What the region's working state costs per device, in process (no HTTP, no broker):
// `node --expose-gc --import tsx bench/support/index-memory.ts 10000` prints V8 heap used per device
// after enrolment, first reports and a hand-out, and after a rollout's reports.
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
const gc = (globalThis as { gc?: () => void }).gc!;
const heap = (): number => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};
const dir = await mkdtemp(join(tmpdir(), 'index-mem-'));
const repo = join(dir, 'fleet');
await makeLocalRepo(repo, smallFleet({ region: 'us-east', web: '1.0.0', db: null }));
const clock = () => Date.now();
const log = pino({ level: 'silent' });
const durable = SqliteStateStore.open(join(dir, 'data'));
const index = new FleetIndex({ durable, clock, offlineAfterMs: () => 600000, log });
const source = await openFleetSource({ repo, branch: 'main', dataDir: join(dir, 'data'), log });
const reconciler = new Reconciler({ region: 'us-east', source, store: index, loader: new FleetLoader({}), clock, log, metrics: createRegionMetrics('us-east'), onHandOut: () => {} });
await reconciler.runPass({ fetch: true, reason: 'start' });
const base = heap();
const { createHash, randomBytes } = await import('node:crypto');
for (let i = 0; i < N; i++) {
  const id = `s${i % 10}-${String(i).padStart(5, '0')}`;
  index.enrollDevice(id, {}, createHash('sha256').update(randomBytes(32)).digest('hex'), Date.now());
  index.clearReportSeq(id);
}
await index.whenWritten();
const enrolled = heap();
let k = 0;
for (const id of index.allDeviceIds()) {
  index.acceptReportSeq(id, 1);
  index.recordReport(id, JSON.parse(JSON.stringify({ web: { version: '1.0.0', state: 'healthy' } })), Date.now());
  k++;
}
await reconciler.runPass({ fetch: false, reason: 'x' });
index.flush();
const reported = heap();
await commitFiles(repo, { 'deployments/web.yaml': webDeployment('2.0.0') }, 'v2');
await reconciler.runPass({ fetch: true, reason: 'commit' });
for (const id of index.allDeviceIds()) {
  index.acceptReportSeq(id, 2);
  index.recordReport(id, JSON.parse(JSON.stringify({ web: { version: '2.0.0', state: 'healthy' } })), Date.now());
}
await reconciler.runPass({ fetch: false, reason: 'x' });
index.flush();
const rolled = heap();
if (process.env.SNAP) (await import("node:v8")).writeHeapSnapshot(process.env.SNAP);
const per = (bytes: number) => `${(bytes / N).toFixed(0)} B/device`;
console.log(JSON.stringify({ devices: N, reports: k, enrolled: per(enrolled - base), reported: per(reported - base), rolledOut: per(rolled - base), counts: index.deviceCounts() }));
process.exit(0);
