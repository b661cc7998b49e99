import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { LISTEN_BACKLOG } from '../../src/http/http-server.js';
import { startRegion, type RunningRegion } from '../../src/region/compose.js';
import { makeLocalRepo } from '../support/git-fixtures.js';
import { executable, requireTool } from '../support/requirements.js';
import { smallFleet } from '../support/small-fleet.js';

const missing = await requireTool(executable('ss', 'apt-get install -y iproute2'));

let root: string | undefined;
let region: RunningRegion | undefined;

afterAll(async () => {
  await region?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

/**
 * Thousands of devices reconnecting at once (a restart, a commit answering every long poll) overflow
 * Node's default listen backlog of 511: the region listens with LISTEN_BACKLOG, which `ss` shows as
 * the Send-Q of the listening socket (capped by the kernel at net.core.somaxconn).
 */
describe.skipIf(missing)('the region listen backlog', () => {
  it('is LISTEN_BACKLOG, as far as somaxconn allows', async () => {
    root = await mkdtemp(join(tmpdir(), 'cascade-backlog-'));
    const repo = join(root, 'fleet');
    await makeLocalRepo(repo, smallFleet({ region: 'eu-west', web: '1.0.0', db: null }));
    region = await startRegion({
      repo, branch: 'main', region: 'eu-west', host: '127.0.0.1', port: 0, dataDir: join(root, 'region'),
      intervalMs: 3_600_000, enrollmentToken: 'backlog-token', log: pino({ level: 'silent' }),
    });
    const port = new URL(region.url).port;
    const line = execFileSync('ss', ['-Hltn', `sport = :${port}`], { encoding: 'utf8' }).trim();
    // State Recv-Q Send-Q Local Peer: for a listening socket Send-Q is the backlog.
    const backlog = Number(line.split(/\s+/)[2]);
    const somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8'));
    expect(backlog).toBe(Math.min(LISTEN_BACKLOG, somaxconn));
    expect(backlog).toBeGreaterThan(511);
  }, 60_000);
});
