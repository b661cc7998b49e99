import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { freePort } from '../support/free-port.js';
import { makeLocalRepo } from '../support/git-fixtures.js';
import { startRegionProcess, type RegionProcess } from '../support/region-process.js';
import { runCli } from '../support/run-cli.js';
import { smallFleet } from '../support/small-fleet.js';

// Each test runs the real CLI several times; on a busy 2-core machine one run can take seconds.
vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

const OPERATOR_TOKEN = 'operator-secret-for-contexts';

let root: string;
let region: RegionProcess;
let env: Record<string, string | undefined>;
let deadUrl: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'cascade-context-'));
  const repo = await makeLocalRepo(join(root, 'fleet'), smallFleet());
  region = await startRegionProcess(['--repo', repo.dir, '--region', 'us-east', '--data', join(root, 'region'), '--insecure-open-enrollment', '--operator-token', OPERATOR_TOKEN]);
  await writeFile(join(root, 'operator.token'), `${OPERATOR_TOKEN}\n`);
  deadUrl = `http://127.0.0.1:${await freePort()}`;
  // Only the config folder of this test; no region URL or token from the environment.
  env = { XDG_CONFIG_HOME: join(root, 'config'), CASCADE_CONFIG: undefined, CASCADE_CONTEXT: undefined, CASCADE_REGION_URL: undefined, CASCADE_OPERATOR_TOKEN: undefined, CASCADE_OPERATOR_TOKEN_FILE: undefined };
});

afterAll(async () => {
  await region?.kill();
  await rm(root, { recursive: true, force: true });
});

const cli = (args: string[], extra: Record<string, string | undefined> = {}) => runCli(args, { env: { ...env, ...extra }, cwd: root });

describe('cascade context', () => {
  it('adds, lists, switches and removes contexts in $XDG_CONFIG_HOME/cascade/config.yaml, readable only by its owner', async () => {
    const added = await cli(['context', 'add', 'lab', '--region-url', region.url, '--operator-token-file', 'operator.token']);
    expect(added.stderr).toBe('');
    expect(added.stdout).toBe(`Added context lab (current) in ${join(root, 'config', 'cascade', 'config.yaml')}\n`);
    expect((await cli(['context', 'add', 'dead', '--region-url', deadUrl])).code).toBe(0);
    const file = join(root, 'config', 'cascade', 'config.yaml');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const text = await readFile(file, 'utf8');
    expect(text).toContain('current-context: lab');
    expect(text).toContain(`operator-token-file: ${join(root, 'operator.token')}`);
    expect(text).not.toContain(OPERATOR_TOKEN);
    const list = await cli(['context', 'list']);
    expect(list.stdout.split('\n')[1]).toMatch(/^ +dead +http:\/\/127\.0\.0\.1:\d+ +- +-$/);
    expect(list.stdout.split('\n')[2]).toMatch(/^\* +lab +http:\/\/127\.0\.0\.1:\d+ +- +operator: .*operator\.token$/);
  });

  it('commands take the region URL and token from the current context', async () => {
    const run = await cli(['devices', 'list']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toBe('0 device(s), 0 revoked\n');
  });

  it('flags and environment variables win over the context; --context picks another', async () => {
    // The current context points at nothing; the flag, then the variable, point at the region.
    expect((await cli(['context', 'use', 'dead'])).stdout).toBe('Switched to context dead\n');
    const token = { CASCADE_OPERATOR_TOKEN: OPERATOR_TOKEN };
    expect((await cli(['devices', 'list'], token)).stderr).toContain(`cannot reach ${deadUrl}`);
    expect((await cli(['devices', 'list', '--region-url', region.url], token)).code).toBe(0);
    expect((await cli(['devices', 'list'], { ...token, CASCADE_REGION_URL: region.url })).code).toBe(0);
    expect((await cli(['devices', 'list', '--context', 'lab'])).code).toBe(0);
    expect((await cli(['--context', 'lab', 'status', '--json'])).code).toBe(0);
    expect((await cli(['devices', 'list'], { CASCADE_CONTEXT: 'lab' })).code).toBe(0);
  }, 120_000);

  it('says what is wrong with an unknown context or a broken file', async () => {
    const unknown = await cli(['devices', 'list', '--context', 'nope']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('no context "nope" in ');
    expect(unknown.stderr).toContain('known: dead, lab');
    expect(unknown.stderr).toContain('[unknown-context]');
    const broken = join(root, 'broken.yaml');
    await writeFile(broken, 'contexts:\n  lab:\n    region-ulr: http://x\n');
    const bad = await cli(['devices', 'list'], { CASCADE_CONFIG: broken });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('context "lab" has an unknown field "region-ulr"');
  });

  it('removes a context, and the current one leaves no context current', async () => {
    expect((await cli(['context', 'remove', 'dead'])).stdout).toContain('Removed context dead; no context is current now');
    const none = await cli(['devices', 'list']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('devices list needs --region-url');
    expect(none.stderr).toContain('cascade context add NAME --region-url URL');
  });
});
