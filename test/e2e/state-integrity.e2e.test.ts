import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, open, rm, stat, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeLocalRepo } from '../support/git-fixtures.js';
import { startRegionProcess, waitFor, type RegionProcess } from '../support/region-process.js';
import { smallFleet } from '../support/small-fleet.js';

const BIN = fileURLToPath(new URL('../../bin/cascade.js', import.meta.url));
const run = promisify(execFile);
const TOKEN = 'integrity-enrolment-token';

/** Overwrites everything after the first page (the schema's page) with bytes that are no b-tree. */
async function scribble(file: string): Promise<void> {
  const { size } = await stat(file);
  const handle = await open(file, 'r+');
  try {
    const garbage = Buffer.alloc(size - 4096, 0xa5);
    for (let i = 0; i < garbage.length; i += 97) garbage[i] = i & 0xff;
    await handle.write(garbage, 0, garbage.length, 4096);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

describe('the state database is checked: a damaged or emptied one never serves as if nothing happened', { timeout: 120_000 }, () => {
  let root: string;
  let repo: string;
  const regions: RegionProcess[] = [];

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cascade-integrity-'));
    repo = (await makeLocalRepo(join(root, 'repo'), smallFleet({ web: '1.0.0' }))).dir;
  });
  afterEach(async () => {
    for (const r of regions.splice(0)) await r.kill('SIGKILL');
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  async function region(data: string, extra: string[] = []): Promise<RegionProcess> {
    const r = await startRegionProcess(['--repo', repo, '--region', 'us-east', '--data', data, '--interval', '1h', '--enrollment-token', TOKEN, ...extra]);
    regions.push(r);
    return r;
  }

  async function enrol(r: RegionProcess, deviceId: string): Promise<number> {
    const answer = await fetch(`${r.url}/api/v1/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ deviceId, labels: {}, enrollmentToken: TOKEN }) });
    return answer.status;
  }

  async function devices(r: RegionProcess): Promise<number> {
    const status = (await (await fetch(`${r.url}/api/v1/status`)).json()) as { devices: { total: number } };
    return status.devices.total;
  }

  async function stopped(r: RegionProcess): Promise<void> {
    await r.kill('SIGTERM');
  }

  it('refuses to start on a damaged database, says how to restore, and starts again from a backup made while running', async () => {
    const data = join(root, 'damaged');
    const r = await region(data);
    for (const id of ['d1', 'd2', 'd3']) expect(await enrol(r, id)).toBe(201);
    const backup = join(root, 'backups', 'region.sqlite');
    const { stdout } = await run(process.execPath, [BIN, 'region', 'backup', '--data', data, '--to', backup]);
    expect(stdout).toContain(`backed up ${data}/state.sqlite to ${backup}`);
    await stopped(r);

    await scribble(join(data, 'state.sqlite'));
    const refused = region(data);
    await expect(refused).rejects.toThrow(/state\.sqlite is damaged .*refusing to start on it: to restore: stop the region, move .* copy your latest backup/);

    // The restore steps of the message, followed.
    for (const suffix of ['-wal', '-shm']) await rm(join(data, `state.sqlite${suffix}`), { force: true });
    await copyFile(backup, join(data, 'state.sqlite'));
    const restored = await region(data);
    expect(await devices(restored)).toBe(3);
  });

  it('a data folder that held a state never starts empty silently: an emptied database is refused unless --init-state', async () => {
    const data = join(root, 'emptied');
    const r = await region(data);
    expect(await enrol(r, 'd1')).toBe(201);
    await stopped(r);

    await truncate(join(data, 'state.sqlite'), 0);
    await expect(region(data)).rejects.toThrow(/state\.sqlite is empty \(0 bytes\), but .* held a region state before .*refusing to start empty/);
    await rm(join(data, 'state.sqlite'));
    await expect(region(data)).rejects.toThrow(/state\.sqlite is missing, but/);

    const fresh = await region(data, ['--init-state']);
    expect(await devices(fresh)).toBe(0);
    expect(fresh.logs.some((l) => String(l['msg']).includes('listening'))).toBe(true);
  });

  it('a database damaged while the region runs makes /healthz and /readyz fail, logged at error and counted', async () => {
    const data = join(root, 'running');
    const r = await region(data);
    await waitFor(async () => ((await fetch(`${r.url}/readyz`)).status === 200 ? true : undefined), 15_000, () => 'ready');
    for (let i = 0; i < 50; i++) expect(await enrol(r, `dev-${i}`)).toBe(201);
    // Everything written so far goes from the log into the database file, which is then damaged under the region.
    const other = new Database(join(data, 'state.sqlite'));
    other.pragma('wal_checkpoint(TRUNCATE)');
    other.close();
    await scribble(join(data, 'state.sqlite'));

    const failures: number[] = [];
    await waitFor(async () => {
      failures.push(await enrol(r, `late-${failures.length}`));
      await fetch(`${r.url}/api/v1/status`);
      return (await fetch(`${r.url}/healthz`)).status === 503 ? true : undefined;
    }, 30_000, () => `enrolments answered ${failures.join(',')}`);
    const health = (await (await fetch(`${r.url}/healthz`)).json()) as { reason: string };
    expect(health.reason).toMatch(/the state database in .* fails \(SQLITE_/);
    expect((await fetch(`${r.url}/readyz`)).status).toBe(503);
    const metrics = await (await fetch(`${r.url}/metrics`)).text();
    expect(Number(/^cascade_state_database_errors_total\{[^}]*\} (\d+)/m.exec(metrics)?.[1])).toBeGreaterThan(0);
    expect(r.logs.some((l) => l['level'] === 50 && String(l['msg']).includes('/healthz and /readyz now fail'))).toBe(true);
  });
});
