/**
 * A real `cascade agent` process with the exec runtime, against a real region (device API + SQLite),
 * handed what an attacker with commit access (or a region bypassing validation) would hand it:
 * hostile versions, unsafe command templates, hostile artifact URLs and paths leading out of the
 * state folder. Marker files in a temp dir prove that no command ran and no file appeared.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AppSpec } from '../../src/desired/model.js';
import { ArtifactServer } from './artifact-server.js';
import { ENROLLMENT_TOKEN, RegionFixture, until } from './region-fixture.js';

const ROOT = resolve(import.meta.dirname, '../..');
const DEVICE = 'edge-hostile-1';
let region: RegionFixture;
let artifacts: ArtifactServer;
let dir: string;
let stateDir: string;
let outside: string;
let agent: ChildProcess;
let stderr = '';

beforeAll(async () => {
  region = await RegionFixture.start();
  artifacts = await ArtifactServer.start();
  dir = mkdtempSync(join(tmpdir(), 'cascade-hostile-'));
  stateDir = join(dir, 'state');
  outside = join(dir, 'outside');
  mkdirSync(outside);
  agent = spawn(
    process.execPath,
    [
      join(ROOT, 'bin/cascade.js'), 'agent',
      '--region-url', region.url,
      '--device-id', DEVICE,
      '--state-dir', stateDir,
      '--enrollment-token', ENROLLMENT_TOKEN,
      '--runtime', 'exec',
      // The test's artifact server is named, as a lab would name its own.
      '--allow-artifact-origin', `${artifacts.url}/`,
    ],
    { cwd: ROOT, env: { ...process.env, CASCADE_LOG_FORMAT: 'json' }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  agent.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  await until(() => region.store.getDevice(DEVICE) !== null, 30_000, 'enrolment');
}, 60_000);

afterAll(async () => {
  if (agent.exitCode === null && agent.signalCode === null) {
    agent.kill('SIGKILL');
    await new Promise((done) => agent.once('exit', done));
  }
  await artifacts.close();
  await region.close();
  rmSync(dir, { recursive: true, force: true });
});

const marker = () => join(dir, 'PWNED');
const ran = () => join(dir, 'ran');

/** Every file under the agent's artifacts folder. */
function artifactFiles(): string[] {
  const root = join(stateDir, 'artifacts');
  return existsSync(root) ? readdirSync(root, { recursive: true, withFileTypes: true }).filter((e) => !e.isDirectory()).map((e) => join(e.parentPath, e.name)) : [];
}

function report(app = 'web') {
  return region.store.getDevice(DEVICE)?.apps[app];
}

/** Hands `app` at `version` with `spec`, and waits for the agent's report about exactly that version. */
async function handOut(version: string, spec: AppSpec, app = 'web'): Promise<{ version: string | null; state: string; message?: string }> {
  region.handOut([DEVICE], { [app]: { version, deployment: `${app}-all` } }, { [app]: spec });
  const expected = `version ${version}`.slice(0, 200);
  await until(
    () => {
      const r = report(app);
      return r !== undefined && (r.state === 'healthy' ? r.version === version : r.state === 'failed' && (r.message ?? '').startsWith(expected));
    },
    30_000,
    `a report about ${app} ${JSON.stringify(version)} (agent stderr: ${stderr.slice(-2000)})`,
  );
  return report(app)!;
}

describe('a real agent handed hostile values', () => {
  it('refuses hostile versions before downloading or running anything', async () => {
    const served = artifacts.add('/web.tgz', 'web');
    const hostile = [
      `1.0.2$(touch ${marker()})`,
      `2\`touch ${marker()}\``,
      `3;touch ${marker()}`,
      `4' ; touch ${marker()} ; '`,
      `5" ; touch ${marker()} ; "`,
      `6\ntouch ${marker()}`,
      `7 && touch ${marker()}`,
      '../../x',
      '../../../../../tmp/escape',
      '/etc/cron.d/x',
      '..',
      '.hidden',
      '-rf',
      `a[$(touch ${marker()})]`,
      '9'.repeat(129),
      '10{artifact}',
      '',
    ];
    // Every quoting style a template can use; any of them running would leave `ran`.
    const templates = [
      `touch ${ran()}; echo {version}`,
      `touch ${ran()}; echo "{version}"`,
      `touch ${ran()}; echo \`echo {version}\``,
      `touch ${ran()}; echo "$(echo {version})"`,
    ];
    let i = 0;
    for (const version of hostile) {
      const template = templates[i++ % templates.length]!;
      const r = await handOut(version, {
        runtime: { type: 'exec', install: template, stop: `touch ${ran()}` },
        artifacts: { [version]: served },
        healthCheck: { exec: `touch ${ran()}` },
      });
      expect(r.state).toBe('failed');
      expect(r.message).toContain('refused');
      expect(existsSync(marker()), JSON.stringify(version)).toBe(false);
      expect(existsSync(ran()), JSON.stringify(version)).toBe(false);
    }
    expect(artifacts.requested).not.toContain('/web.tgz');
    expect(artifactFiles()).toEqual([]);
  });

  it('refuses command templates that cannot be made safe, and runs the safe ones with the exact value', async () => {
    const served = artifacts.add('/tool.tgz', 'tool');
    const unsafe: Array<string | string[]> = [
      `touch ${ran()}; echo '{version}'`,
      `touch ${ran()}; echo \${X:-{version}}`,
      `touch ${ran()}; echo $(( {version} ))`,
      `touch ${ran()}; cat <<EOF\n{version}\nEOF`,
      `touch ${ran()}; echo \\{version}`,
      ['{version}', ran()],
    ];
    let n = 0;
    for (const install of unsafe) {
      const version = `1.0.${n++}`;
      const r = await handOut(version, { runtime: { type: 'exec', install }, artifacts: { [version]: served } }, 'tool');
      expect(r.state, JSON.stringify(install)).toBe('failed');
      expect(r.message).toContain('refused');
      expect(existsSync(ran()), JSON.stringify(install)).toBe(false);
    }
    expect(artifacts.requested).not.toContain('/tool.tgz');

    // The safe forms: values arrive exactly, as data.
    const version = '2.0.0+build.7';
    const out = join(dir, 'styles');
    const r = await handOut(
      version,
      {
        runtime: {
          type: 'exec',
          install: `printf '%s|' {version} "{version}" "v{version}" "$(printf %s {version})" \`printf %s {version}\` {app} > ${out}; cp {artifact} ${join(dir, 'copied')}`,
          start: ['/bin/cp', '{artifact}', join(dir, 'copied-by-argv')],
        },
        artifacts: { [version]: served },
        healthCheck: { exec: ['/usr/bin/test', '-f', join(dir, 'copied-by-argv')] },
      },
      'tool',
    );
    expect(r.state, r.message).toBe('healthy');
    expect(readFileSync(out, 'utf8')).toBe(`${version}|${version}|v${version}|${version}|${version}|tool|`);
    expect(readFileSync(join(dir, 'copied'), 'utf8')).toBe('tool');
    expect(readFileSync(join(dir, 'copied-by-argv'), 'utf8')).toBe('tool');
    expect(existsSync(marker())).toBe(false);
  });

  it('refuses hostile artifact URLs before connecting', async () => {
    const port = new URL(artifacts.url).port;
    // Another port of this machine: not the allowed origin, so the notations meet the default rules.
    const other = Number(port) + 1;
    artifacts.add('/db.tgz', 'db');
    const hostile = [
      'file:///etc/shadow',
      'file:///etc/passwd',
      'data:,hello',
      'ftp://example.com/db.tgz',
      `http://localhost:${port}/db.tgz`,
      `http://2130706433:${other}/db.tgz`,
      `http://0x7f.1:${other}/db.tgz`,
      `http://0177.0.0.1:${other}/db.tgz`,
      `http://127.0.0.2:${port}/db.tgz`,
      `http://[::1]:${port}/db.tgz`,
      `http://[::ffff:127.0.0.1]:${other}/db.tgz`,
      'http://169.254.169.254/latest/meta-data/iam/security-credentials/',
      'http://[fe80::1]/db.tgz',
      `http://0.0.0.0:${port}/db.tgz`,
      `http://127.0.0.1:${port}@localhost:${port}/db.tgz`,
    ];
    let n = 0;
    for (const url of hostile) {
      const version = `3.0.${n++}`;
      const r = await handOut(version, { runtime: { type: 'exec', install: `touch ${ran()}; cp {artifact} ${outside}/` }, artifacts: { [version]: { url, sha256: 'a'.repeat(64), size: 2 } } }, 'db');
      expect(r.state, url).toBe('failed');
      expect(r.message, url).toContain('refused');
    }
    expect(existsSync(ran())).toBe(false);
    expect(readdirSync(outside)).toEqual([]);
    expect(artifacts.requested).not.toContain('/db.tgz');
  });

  it('never writes through a symlink that leads out of the state folder', async () => {
    // Something (another process, an old bug) left a link where the agent keeps an app's artifacts.
    mkdirSync(join(stateDir, 'artifacts'), { recursive: true });
    symlinkSync(outside, join(stateDir, 'artifacts', 'cam'));
    const served = artifacts.add('/cam.tgz', 'cam');
    const r = await handOut('1.0.0', { runtime: { type: 'exec', install: `touch ${ran()}` }, artifacts: { '1.0.0': served } }, 'cam');
    expect(r.state).toBe('failed');
    expect(r.message).toMatch(/refusing path .* outside the state folder/);
    expect(readdirSync(outside)).toEqual([]);
    expect(existsSync(ran())).toBe(false);
    expect(artifacts.requested).not.toContain('/cam.tgz');
  });

  it('keeps a monotonic report sequence number in its state folder', () => {
    const state = JSON.parse(readFileSync(join(stateDir, 'agent-state.json'), 'utf8')) as { reportSeq: number };
    expect(state.reportSeq).toBeGreaterThan(10);
  });
});
