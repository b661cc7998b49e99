// The region's MQTT push in process, without simulators: `node --import tsx bench/support/publish-profile.ts 10000`.
// N devices enrolled and reported in a real FleetIndex, a real Reconciler and a real region transport
// on a private Mosquitto; after a commit, times fetch + pass + hand-out + every PUBACK, against a bare
// MQTT.js client publishing the same number of retained QoS 1 messages of the same size.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { FleetLoader } from '../../src/desired/load.js';
import { FleetIndex } from '../../src/reconciler/fleet-index.js';
import { Reconciler } from '../../src/reconciler/reconciler.js';
import { createRegionMetrics } from '../../src/reconciler/region-metrics.js';
import { DesiredDocuments, desiredResponse } from '../../src/region/desired-document.js';
import { startMqttRegionTransport } from '../../src/region/mqtt/region-transport.js';
import { openFleetSource } from '../../src/source/open-fleet-source.js';
import { SqliteStateStore } from '../../src/storage/region-state-store.js';
import { commitFiles, makeLocalRepo } from '../../test/support/git-fixtures.js';
import { startMosquitto } from '../../test/support/mosquitto.js';
import { smallFleet, webDeployment } from '../../test/support/small-fleet.js';

const N = Number(process.argv[2] ?? 10000);
const REGION = 'us-east';
const dir = await mkdtemp(join(tmpdir(), 'publish-prof-'));
const repo = join(dir, 'fleet');
await makeLocalRepo(repo, smallFleet({ region: REGION, web: '1.0.0', db: null }));
const USERS = { region: 'region-secret', baseline: 'baseline-secret' };
const broker = await startMosquitto({ users: USERS });
const clock = () => Date.now();
const log = pino({ level: process.env['LOG_LEVEL'] ?? 'silent' });
const durable = SqliteStateStore.open(join(dir, 'data'));
const index = new FleetIndex({ durable, clock, offlineAfterMs: () => 600000, log });
const source = await openFleetSource({ repo, branch: 'main', dataDir: join(dir, 'data'), log });
const metrics = createRegionMetrics(REGION);
const documents = new DesiredDocuments(index, REGION);
const transport = await startMqttRegionTransport({
  url: broker.url, username: 'region', password: USERS.region, region: REGION, store: index, log, clock,
  desiredFor: (id) => desiredResponse(index, REGION, id),
  desiredMessage: (id) => documents.message(id),
});
let lastPublished: Promise<number> = Promise.resolve(0);
let handedAt = 0;
const reconciler = new Reconciler({
  region: REGION, source, store: index, loader: new FleetLoader({}), clock, log, metrics,
  onHandOut: (devices) => { handedAt = performance.now(); lastPublished = transport.publishDesired(devices); },
});
await reconciler.runPass({ fetch: true, reason: 'start' });
for (let i = 0; i < N; i++) index.enrollDevice(`d-${i}`, {}, String(i).padStart(64, '0'), Date.now());
for (let i = 0; i < N; i++) index.recordReport(`d-${i}`, { web: { version: '1.0.0', state: 'healthy' } }, Date.now());
await reconciler.runPass({ fetch: false, reason: 'x' });
await lastPublished;

await commitFiles(repo, { 'deployments/web.yaml': webDeployment('2.0.0') }, 'v2');
const before = transport.published();
// PROFILE=<file>: a CPU profile of the commit pass and its publishes only.
const profile = process.env['PROFILE'];
const session = new Session();
if (profile) {
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 200 });
  await session.post('Profiler.start');
}
// BUSY=<ms>: the event loop spends that long in each turn during the push, as when the first
// devices' reports come back while the region still publishes.
const busyMs = Number(process.env['BUSY'] ?? 0);
const busy = busyMs > 0 ? setInterval(() => { const until = performance.now() + busyMs; while (performance.now() < until); }, 0) : undefined;
// The event loop's longest stalls during the push: a 2 ms timer's gaps (what a report or a status request waits at worst).
const gaps: number[] = [];
let lastTick = performance.now();
const ticker = setInterval(() => {
  const at = performance.now();
  gaps.push(at - lastTick);
  lastTick = at;
}, 2);
const started = performance.now();
await reconciler.runPass({ fetch: true, reason: 'commit' });
const passDone = performance.now();
const sent = await lastPublished;
const done = performance.now();
clearInterval(busy);
clearInterval(ticker);
const sortedGaps = gaps.sort((a, b) => b - a);
console.log(`longest event-loop stalls (ms): ${sortedGaps.slice(0, 6).map((g) => g.toFixed(0)).join(' ')}; p99 ${sortedGaps[Math.floor(gaps.length / 100)]?.toFixed(1)} of ${gaps.length} ticks`);
if (profile) await writeFile(profile, JSON.stringify((await session.post('Profiler.stop')).profile));
console.log(`region: pass ${(handedAt - started).toFixed(0)} ms to hand-out, pass done at ${(passDone - started).toFixed(0)} ms, ${sent} published (${transport.published() - before}) by ${(done - started).toFixed(0)} ms; publishing alone ${(done - handedAt).toFixed(0)} ms`);

const payload = documents.message('d-1').payload;
const client = await mqtt.connectAsync(broker.url, { protocolVersion: 5, reconnectPeriod: 0, username: 'baseline', password: USERS.baseline });
const t = performance.now();
await Promise.all(Array.from({ length: N }, (_, i) => client.publishAsync(`cascade/${REGION}/baseline-${i}/desired`, payload, { qos: 1, retain: true })));
console.log(`bare MQTT.js: ${N} publishes in ${(performance.now() - t).toFixed(0)} ms`);
await client.endAsync();
await transport.close();
await broker.stop();
process.exit(0);
