import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceDesired, DeviceId } from '../../src/core/types.js';
import { FleetLoader } from '../../src/desired/load.js';
import { computeHandOut } from '../../src/plan/hand-out.js';
import { collectRolloutInputs, planRollouts, releasedBy } from '../../src/plan/rollout/index.js';
import { FleetIndex } from '../../src/reconciler/fleet-index.js';
import { Reconciler, installedVersions, withConnected } from '../../src/reconciler/reconciler.js';
import { createRegionMetrics } from '../../src/reconciler/region-metrics.js';
import { countDevices } from '../../src/reconciler/region-status.js';
import { openFleetSource } from '../../src/source/open-fleet-source.js';
import type { FleetSource } from '../../src/source/fleet-source.js';
import { SqliteStateStore } from '../../src/storage/region-state-store.js';
import { commitFiles, makeLocalRepo } from '../support/git-fixtures.js';
import { smallFleet, webDeployment } from '../support/small-fleet.js';

/**
 * The incremental pass against the full computation it replaces. After any sequence of events
 * (enrolments, reports, polls, revocations, commits, time passing), each followed by a pass:
 * - a full rollout plan and hand-out from scratch would hand nobody anything new, and reports the
 *   same rollout statuses;
 * - the maintained device counts equal a recount from SQLite;
 * - the index matches a full reload (verify finds no difference).
 */
const REGION = 'us-east';
const ROLLOUT = '    waves: [25, 100]\n    maxUnavailable: 2\n    offlineAfter: 30s\n    failureThreshold: 3\n';
const OFFLINE_AFTER_MS = 60_000;
const log = pino({ level: 'silent' });

type Command =
  | { kind: 'enrol'; device: number; role: 'a' | 'storage' }
  | { kind: 'report'; device: number; follow: boolean; fail: boolean }
  | { kind: 'poll'; device: number }
  | { kind: 'revoke'; device: number }
  | { kind: 'commit'; web: string; db: string }
  | { kind: 'time'; ms: number };

const commandArb: fc.Arbitrary<Command> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('enrol' as const), device: fc.integer({ min: 0, max: 11 }), role: fc.constantFrom('a' as const, 'storage' as const) }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('report' as const), device: fc.integer({ min: 0, max: 11 }), follow: fc.boolean(), fail: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('poll' as const), device: fc.integer({ min: 0, max: 11 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('revoke' as const), device: fc.integer({ min: 0, max: 11 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('commit' as const), web: fc.constantFrom('1.0.0', '2.0.0', '3.0.0'), db: fc.constantFrom('5.0.0', '6.0.0') }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('time' as const), ms: fc.constantFrom(1_000, 20_000, 45_000, 120_000) }) },
);

describe('incremental reconcile pass', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cascade-incremental-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('leaves nothing a full pass would change, and keeps counts equal to a recount', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(commandArb, { minLength: 5, maxLength: 40 }), async (commands) => {
        const dir = join(root, `run-${run++}`);
        const repo = join(dir, 'fleet');
        await makeLocalRepo(repo, smallFleet({ region: REGION, web: '1.0.0', db: '5.0.0', rollout: ROLLOUT }));
        let now = 1_800_000_000_000;
        const clock = () => now;
        const durable = SqliteStateStore.open(join(dir, 'data'));
        const index = new FleetIndex({ durable, clock, offlineAfterMs: () => OFFLINE_AFTER_MS, log });
        let source: FleetSource | undefined;
        try {
          source = await openFleetSource({ repo, branch: 'main', dataDir: join(dir, 'data'), log });
          const reconciler = new Reconciler({
            region: REGION,
            source,
            store: index,
            loader: new FleetLoader({}),
            clock,
            log,
            metrics: createRegionMetrics(REGION),
            onHandOut: () => {},
          });
          await reconciler.runPass({ fetch: true, reason: 'start' });
          const tokens = new Map<number, number>();
          let version = { web: '1.0.0', db: '5.0.0' };
          for (const command of commands) {
            const id = `dev-${command.kind === 'commit' || command.kind === 'time' ? 0 : command.device}`;
            switch (command.kind) {
              case 'enrol': {
                if (index.getDevice(id)?.revoked) break;
                const n = (tokens.get(command.device) ?? 0) + 1;
                tokens.set(command.device, n);
                index.enrollDevice(id, { role: command.role }, `${id}-token-${n}`.padEnd(64, '0'), now);
                break;
              }
              case 'report': {
                const device = index.getDevice(id);
                if (!device) break;
                const handed = index.getHanded(id)?.apps ?? {};
                const apps: Record<string, { version: string | null; state: 'healthy' | 'failed' }> = {};
                for (const [app, desired] of Object.entries(handed)) {
                  apps[app] = command.follow ? { version: desired.version, state: command.fail ? 'failed' : 'healthy' } : (device.apps[app] as typeof apps[string]) ?? { version: '1.0.0', state: 'healthy' };
                }
                if (Object.keys(handed).length === 0 && command.follow) apps['web'] = { version: '1.0.0', state: 'healthy' };
                index.recordReport(id, apps, now);
                break;
              }
              case 'poll':
                index.markSeen(id, now);
                break;
              case 'revoke':
                index.revokeDevice(id, now);
                break;
              case 'commit':
                if (command.web === version.web && command.db === version.db) break;
                version = { web: command.web, db: command.db };
                await commitFiles(repo, { 'deployments/web.yaml': webDeployment(command.web), 'deployments/db.yaml': smallFleet({ db: command.db })['deployments/db.yaml']! }, 'bump');
                break;
              case 'time':
                now += command.ms;
                break;
            }
            // Between passes too (the periodic resync runs whenever the region is idle): what changed since the
            // last pass is the next pass's to count, not a difference.
            expect(reconciler.verifyRollouts(), `after ${command.kind}, before its pass`).toEqual([]);
            await reconciler.runPass({ fetch: command.kind === 'commit', reason: command.kind });
            checkAgainstFullPass(index, reconciler, durable, now);
          }
          expect(index.verify((devices) => reconciler.resolveAll(devices))).toEqual([]);
          // The rollouts' counts, kept device by device, equal a recount of every Deployment's devices.
          expect(reconciler.verifyRollouts()).toEqual([]);
        } finally {
          await source?.close();
          index.close();
        }
      }),
      { numRuns: 12, seed: Number(process.env['CASCADE_PROPERTY_SEED'] ?? 20261201), endOnFailure: true },
    );
  }, 240_000);
});

function checkAgainstFullPass(index: FleetIndex, reconciler: Reconciler, durable: SqliteStateStore, now: number): void {
  const fleet = reconciler.appliedFleet;
  if (!fleet) return;
  index.flush();
  const devices = withConnected(durable.listDevices(), now);
  const resolved = reconciler.resolveAll(devices);
  for (const device of devices) {
    expect(index.resolvedOf(device.id) ?? {}, `resolution of ${device.id}`).toEqual(device.revoked ? {} : (resolved.get(device.id) ?? {}));
  }
  const handedStates = durable.listHanded();
  const handed = new Map<DeviceId, DeviceDesired>([...handedStates].map(([id, h]) => [id, h.apps]));
  const previous = durable.getRolloutStates();
  const inputs = collectRolloutInputs({ fleet, region: REGION, resolved, handed, devices, previous });
  const plan = planRollouts({ now, offlineAfterMs: reconciler.offlineAfterMs, revision: fleet.revision ?? 'unknown', deployments: inputs, previous });
  expect(reconciler.rolloutStatuses).toEqual(plan.statuses);
  const reported = new Set(devices.filter((d) => index.hasReported(d.id)).map((d) => d.id));
  const installed = new Map(devices.map((d) => [d.id, installedVersions(d)]));
  const changes = computeHandOut({
    resolved: new Map([...resolved].filter(([id]) => reported.has(id))),
    handed: new Map([...handed].filter(([id]) => reported.has(id))),
    installed,
    released: releasedBy(plan),
  });
  expect([...changes.keys()], 'devices a full pass would hand something new').toEqual([]);
  // Connected devices aside (none here), the maintained counts are a recount of SQLite.
  expect(index.deviceCounts()).toEqual(countDevices(devices, resolved, handedStates, now, OFFLINE_AFTER_MS));
}
