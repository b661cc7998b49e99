import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { downloadFromRelay } from '../src/agent/download.js';
import { RegionClient } from '../src/agent/http/region-client.js';
import type { FileArtifact } from '../src/core/app-spec.js';
import { apiPaths } from '../src/protocol/types.js';
import { startRegion, type RunningRegion } from '../src/region/compose.js';
import { commitFiles, makeLocalRepo } from '../test/support/git-fixtures.js';
import { OriginServer } from '../test/support/origin-server.js';
import { figure, type BenchFigure, type BenchSuite } from './types.js';

/**
 * The artifact relay with a 50 MB artifact whose new version differs in 2% of its bytes, rolled out to
 * 1,000 simulated devices that run the old version (installed before the region relayed anything, so
 * the region fetches the old version too, once, as the base of the delta):
 * - origin bytes per update (goal: 1x the artifact per region; direct downloads would be 1,000x);
 * - bytes sent to devices per update, per device (goal: under 10% of the artifact, with deltas);
 * - relay throughput for whole files, 16 clients at once, beside a plain static file server
 *   (node:http + createReadStream) serving the same file on the same machine.
 * Every device downloads its delta from the region; a sample of them also rebuilds the file with
 * zstd and checks it against git's sha256 (all 1,000 doing so would measure zstd, not the relay).
 */
// RELAY_BENCH_SIZE / RELAY_BENCH_DEVICES shrink it for a quick check of the harness itself.
const SIZE = Number(process.env['RELAY_BENCH_SIZE'] ?? 50 * 1024 * 1024);
const DEVICES = Number(process.env['RELAY_BENCH_DEVICES'] ?? 1000);
const VERIFIED_SAMPLE = 10;
const PARALLEL = 50;
const THROUGHPUT_CLIENTS = 16;
const TOKEN = 'bench-token';

function changed(data: Buffer, share: number): Buffer {
  const copy = Buffer.from(data);
  const runs = 16;
  const run = Math.floor((data.length * share) / runs);
  for (let i = 0; i < runs; i++) randomBytes(run).copy(copy, Math.floor(((i + 0.5) * data.length) / runs));
  return copy;
}

function fleet(version: string, artifacts: Record<string, FileArtifact>): Record<string, string> {
  const list = Object.entries(artifacts)
    .map(([v, a]) => `    "${v}":\n      url: ${a.url}\n      sha256: ${a.sha256}\n      size: ${a.size}\n`)
    .join('');
  return {
    'fleet.yaml': 'apiVersion: cascade/v1\nkind: Fleet\nmetadata:\n  name: bench\nspec:\n  rollout:\n    waves: [100]\n',
    'regions/lab.yaml': 'apiVersion: cascade/v1\nkind: Region\nmetadata:\n  name: lab\n',
    'apps/fw.yaml': `apiVersion: cascade/v1\nkind: App\nmetadata:\n  name: fw\nspec:\n  runtime:\n    type: exec\n    install: ["cp", "{artifact}", "fw.bin"]\n  artifacts:\n${list}`,
    'deployments/fw.yaml': `apiVersion: cascade/v1\nkind: Deployment\nmetadata:\n  name: fw\nspec:\n  app: fw\n  version: ${version}\n`,
  };
}

async function pool<T>(items: T[], limit: number, work: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < items.length) {
        const index = next++;
        await work(items[index]!, index);
      }
    }),
  );
}

/** GETs a URL and counts the body's bytes. */
function drain(url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers }, (response) => {
        if (response.statusCode !== 200) {
          response.resume();
          reject(new Error(`${url}: ${response.statusCode}`));
          return;
        }
        let bytes = 0;
        response.on('data', (chunk: Buffer) => (bytes += chunk.length));
        response.on('end', () => resolve(bytes));
        response.on('error', reject);
      })
      .on('error', reject);
  });
}

async function until(check: () => boolean | Promise<boolean>, what: () => string, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const step = (what: string) => process.stderr.write(`relay bench: ${what}\n`);

async function run(): Promise<BenchFigure[]> {
  const root = await mkdtemp(join(tmpdir(), 'cascade-relay-bench-'));
  const origin = await OriginServer.start();
  let region: RunningRegion | null = null;
  let staticServer: http.Server | null = null;
  try {
    const v1 = randomBytes(SIZE);
    const v2 = changed(v1, 0.02);
    const a1 = origin.add('/fw-1.bin', v1);
    const a2 = origin.add('/fw-2.bin', v2);
    const current = join(root, 'fw-1.bin');
    await writeFile(current, v1);
    const v2File = join(root, 'fw-2.bin');
    await writeFile(v2File, v2);
    const repo = (await makeLocalRepo(join(root, 'fleet'), fleet('1.0.0', { '1.0.0': a1, '2.0.0': a2 }))).dir;
    region = await startRegion({
      repo,
      branch: 'main',
      region: 'lab',
      host: '127.0.0.1',
      port: 0,
      dataDir: join(root, 'region'),
      intervalMs: 3_600_000,
      enrollmentToken: TOKEN,
      artifactPolicy: { allowOrigins: [`${origin.url}/`] },
      artifactRelay: { cacheBytes: 4 * SIZE, concurrency: 64 },
      log: pino({ level: 'silent' }),
    });
    const url = region.url;
    step('region started');

    // 1,000 devices that already run version 1.
    const clients = Array.from({ length: DEVICES }, (_, i) => new RegionClient({ regionUrl: url, deviceId: `dev-${i}` }));
    await pool(clients, PARALLEL, async (client) => {
      await client.enroll({}, TOKEN);
      await client.report({ apps: { fw: { version: '1.0.0', state: 'healthy' } } });
    });
    step('devices enrolled');
    await region.reconcileNow();
    const r = region;
    // The update: version 2.
    await commitFiles(repo, fleet('2.0.0', { '1.0.0': a1, '2.0.0': a2 }), 'fw 2');
    const releasedAfter = performance.now();
    await region.reconcileNow();
    await until(async () => {
      await r.reconcileNow();
      const answer = await clients[0]!.getDesired(null, 0);
      return answer.status === 200 && answer.body.apps['fw']?.version === '2.0.0';
    }, () => `version 2 released: ${JSON.stringify(r.status())}`);
    // Preparing fetched version 2 and, as the base of the delta, version 1 (each once).
    const prepareSeconds = (performance.now() - releasedAfter) / 1000;

    step('version 2 released');
    let deltaBytes = 0;
    let verified = 0;
    const started = performance.now();
    await pool(clients, PARALLEL, async (client, index) => {
      const answer = await client.getDesired(null, 0);
      if (answer.status !== 200) throw new Error('no desired state');
      const wire = answer.body.apps['fw']!;
      if (!wire.relay?.delta) throw new Error(`dev-${index}: no delta offered: ${JSON.stringify(wire)}`);
      if (index < VERIFIED_SAMPLE) {
        const result = await downloadFromRelay(wire.artifact as FileArtifact, wire.relay, join(root, `dev-${index}-fw-2.bin`), {
          source: { regionUrl: url, token: () => client.token },
          current,
        });
        if (result.via !== 'delta') throw new Error(`dev-${index}: fell back to ${result.via}`);
        deltaBytes += result.bytesReceived;
        verified++;
      } else {
        const received = await drain(url + apiPaths.artifactDelta(a2.sha256, a1.sha256), { authorization: `Bearer ${client.token}` });
        deltaBytes += received;
      }
      await client.report({ apps: { fw: { version: '2.0.0', state: 'healthy' } } });
    });
    const rolloutSeconds = (performance.now() - started) / 1000;
    const status = region.status().artifacts!;
    const v2Entry = status.artifacts.find((a) => a.version === '2.0.0');
    const originPerUpdate = origin.sent('/fw-2.bin') / SIZE;
    const perDevice = deltaBytes / DEVICES;

    // Throughput of whole files: the relay against a plain static server, same file, same clients.
    staticServer = http.createServer((_request, response) => {
      response.writeHead(200, { 'content-length': SIZE });
      createReadStream(v2File).pipe(response);
    });
    await new Promise<void>((resolve) => staticServer!.listen(0, '127.0.0.1', resolve));
    const staticUrl = `http://127.0.0.1:${(staticServer.address() as AddressInfo).port}/fw-2.bin`;
    const measure = async (get: (i: number) => Promise<number>): Promise<number> => {
      const t0 = performance.now();
      const sizes = await Promise.all(Array.from({ length: THROUGHPUT_CLIENTS }, (_, i) => get(i)));
      const total = sizes.reduce((a, b) => a + b, 0);
      return total / 1024 / 1024 / ((performance.now() - t0) / 1000);
    };
    const staticMBs = await measure(() => drain(staticUrl));
    const relayMBs = await measure((i) => drain(url + apiPaths.artifact(a2.sha256), { authorization: `Bearer ${clients[i % DEVICES]!.token}` }));

    process.stderr.write(
      `relay: prepare (fetch ${(SIZE / 1024 / 1024).toFixed(0)} MiB + delta) ${prepareSeconds.toFixed(1)} s; ${DEVICES} devices updated in ${rolloutSeconds.toFixed(1)} s; ` +
        `delta ${(perDevice / 1024).toFixed(0)} KiB; ${verified} rebuilt and verified; status ${JSON.stringify({ ...status, artifacts: v2Entry })}\n`,
    );
    return [
      figure('origin bytes per update (x artifact size)', originPerUpdate, 'x', '1x per region (direct: 1,000x)', originPerUpdate <= 1.0001, { name: `direct downloads by ${DEVICES} devices`, value: DEVICES, unit: 'x' }),
      figure('bytes to each device per update', perDevice / 1024 / 1024, 'MiB', '< 10% of the full artifact (deltas)', perDevice < 0.1 * SIZE, { name: 'full artifact', value: SIZE / 1024 / 1024, unit: 'MiB' }),
      figure(`relay throughput, whole files, ${THROUGHPUT_CLIENTS} clients`, relayMBs, 'MB/s', '>= 50% of a plain static file server', relayMBs >= 0.5 * staticMBs, { name: 'node:http + createReadStream', value: staticMBs, unit: 'MB/s' }),
    ];
  } finally {
    await region?.close();
    await origin.close();
    if (staticServer) {
      staticServer.closeAllConnections();
      await new Promise<void>((resolve) => staticServer!.close(() => resolve()));
    }
    await rm(root, { recursive: true, force: true });
  }
}

export const suite: BenchSuite = { name: 'relay', run };
