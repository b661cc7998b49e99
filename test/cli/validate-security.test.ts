/**
 * `cascade validate` (a real process) refuses what must never reach a device: versions outside
 * the grammar, artifact URLs with other schemes or local hosts, plain http: where nothing allows
 * it, command templates that cannot be made safe; and names the symlinks and submodules it does
 * not follow. Every refusal is `path:line:col: message`.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 'Test',
  GIT_AUTHOR_EMAIL: 'test@example.com',
  GIT_COMMITTER_NAME: 'Test',
  GIT_COMMITTER_EMAIL: 'test@example.com',
  GIT_CONFIG_NOSYSTEM: '1',
  HOME: tmpdir(),
};
const SHA = 'a'.repeat(64);

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cascade(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(ROOT, 'bin/cascade.js'), ...args], { cwd: ROOT, env: { ...process.env, ...env } }, (error, stdout, stderr) => {
      resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr });
    });
  });
}

interface Problem {
  path: string;
  line: number;
  col: number;
  code: string;
  message: string;
}

async function validate(dir: string, ...extra: string[]): Promise<{ code: number; problems: Problem[]; warnings: Problem[]; stderr: string }> {
  const run = await cascade(['validate', dir, '--json', ...extra]);
  const report = JSON.parse(run.stdout) as { problems: Problem[]; warnings: Problem[] };
  return { code: run.code, problems: report.problems, warnings: report.warnings, stderr: run.stderr };
}

function fleet(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'cascade-validate-sec-'));
  dirs.push(dir);
  const all: Record<string, string> = {
    'regions.yaml': 'apiVersion: cascade/v1\nkind: Region\nmetadata:\n  name: prod\n---\napiVersion: cascade/v1\nkind: Region\nmetadata:\n  name: lab\nspec:\n  allowHttpArtifacts: true\n',
    ...files,
  };
  for (const [path, text] of Object.entries(all)) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}

/** An App with one artifact per URL, and the line and column of each URL's value. */
function appWithUrls(urls: string[], extra = ''): { text: string; at: Array<{ line: number; col: number }> } {
  const lines = ['apiVersion: cascade/v1', 'kind: App', 'metadata:', '  name: web', 'spec:', extra ? `  ${extra}` : '', '  artifacts:'].filter((l) => l !== '');
  const at: Array<{ line: number; col: number }> = [];
  urls.forEach((url, i) => {
    lines.push(`    "1.0.${i}":`);
    lines.push(`      url: ${JSON.stringify(url)}`);
    at.push({ line: lines.length, col: 12 });
    lines.push(`      sha256: "${SHA}"`, '      size: 1');
  });
  return { text: lines.join('\n') + '\n', at };
}

function deployment(name: string, version: string, regions?: string[]): string {
  return (
    `apiVersion: cascade/v1\nkind: Deployment\nmetadata:\n  name: ${name}\nspec:\n  app: web\n  version: ${JSON.stringify(version)}\n` +
    (regions ? `  selector:\n    regions: [${regions.join(', ')}]\n` : '')
  );
}

// Each test runs `cascade validate` several times as a real process; on a busy machine that takes a while.
describe('cascade validate refuses what must never reach a device', { timeout: 180_000 }, () => {
  it('refuses versions outside the grammar, at path:line:col, in Deployments and App artifact keys', async () => {
    const hostile = ['1.0.2$(touch /tmp/x)', '1`id`', '1;id', "1' || '", '1"x', '../../x', '..', '/etc/x', '-rf', '.1', '1 2', 'a\nb', '9'.repeat(129), 'ü1'];
    const files: Record<string, string> = {
      'apps/web.yaml': `apiVersion: cascade/v1\nkind: App\nmetadata:\n  name: web\nspec:\n  artifacts:\n    "../../x":\n      url: https://example.com/x\n      sha256: "${SHA}"\n      size: 1\n`,
    };
    hostile.forEach((version, i) => (files[`deployments/d${i}.yaml`] = deployment(`d${i}`, version, ['prod'])));
    const dir = fleet(files);
    const { code, problems } = await validate(dir);
    expect(code).toBe(1);
    hostile.forEach((version, i) => {
      const found = problems.filter((p) => p.path === `deployments/d${i}.yaml` && p.code === 'schema');
      expect(found.length, JSON.stringify(version)).toBeGreaterThan(0);
      expect(found[0]).toMatchObject({ line: 7, col: 12 });
      expect(found.map((p) => p.message).join(' ')).toMatch(/spec\.version .*(malformed: letters, digits, "\.", "_", "\+" and "-", at most 128 characters, starting with a letter or digit|longer than 128)/);
    });
    expect(problems).toContainEqual(expect.objectContaining({ path: 'apps/web.yaml', line: 7, col: 5, code: 'schema', message: expect.stringContaining('key "../../x" in spec.artifacts is malformed') }));
    // The text form is path:line:col: message.
    const text = await cascade(['validate', dir]);
    expect(text.stdout).toContain('deployments/d0.yaml:7:12: spec.version "1.0.2$(touch /tmp/x)" is malformed');
  });

  it('refuses artifact URLs with other schemes or local hosts, in any notation', async () => {
    const hostile = [
      'file:///etc/shadow',
      'data:,x',
      'ftp://example.com/a',
      'javascript:alert(1)',
      '/relative/path.tgz',
      'https://localhost/a',
      'https://app.localhost/a',
      'https://127.0.0.1/a',
      'https://2130706433/a',
      'https://0x7f.1/a',
      'https://0177.0.0.1/a',
      'https://127.1/a',
      'https://[::1]/a',
      'https://[::ffff:127.0.0.1]/a',
      'https://[fe80::1]/a',
      'https://169.254.169.254/latest/meta-data/',
      'https://2852039166/latest/meta-data/',
      'https://0.0.0.0/a',
      'https://[::]/a',
      'https://metadata.google.internal/computeMetadata/v1/',
    ];
    const app = appWithUrls(hostile);
    const dir = fleet({ 'apps/web.yaml': app.text });
    const { code, problems } = await validate(dir);
    expect(code).toBe(1);
    hostile.forEach((url, i) => {
      expect(problems, url).toContainEqual(expect.objectContaining({ path: 'apps/web.yaml', ...app.at[i], code: 'artifact-url-refused' }));
    });
    expect(problems).toHaveLength(hostile.length);
  });

  it('accepts a local origin only when named with --allow-artifact-origin or CASCADE_ALLOW_ARTIFACT_ORIGIN', async () => {
    const app = appWithUrls(['http://127.0.0.1:8081/web.tgz', 'http://127.0.0.1:8081/sub/web.tgz']);
    const dir = fleet({ 'apps/web.yaml': app.text, 'deployments/web.yaml': deployment('web', '1.0.0', ['prod']) });
    expect((await validate(dir)).problems.map((p) => p.code)).toEqual(['artifact-url-refused', 'artifact-url-refused']);
    expect(await validate(dir, '--allow-artifact-origin', 'http://127.0.0.1:8081/')).toMatchObject({ code: 0, problems: [] });
    // A prefix is a prefix: a sibling folder or another port is not under it.
    expect((await validate(dir, '--allow-artifact-origin', 'http://127.0.0.1:8081/sub')).problems).toHaveLength(1);
    expect((await validate(dir, '--allow-artifact-origin', 'http://127.0.0.1:808')).problems).toHaveLength(2);
    const viaEnv = await cascade(['validate', dir], { CASCADE_ALLOW_ARTIFACT_ORIGIN: 'https://other.example/, http://127.0.0.1:8081' });
    expect(viaEnv.code).toBe(0);
    const bad = await cascade(['validate', dir, '--allow-artifact-origin', 'file:///']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('only http: and https: origins can be allowed');
  });

  it('cascade plan refuses the same URLs, and takes the same --allow-artifact-origin', async () => {
    const dir = fleet({ 'apps/web.yaml': appWithUrls(['http://127.0.0.1:8081/web.tgz']).text, 'deployments/web.yaml': deployment('web', '1.0.0', ['prod']) });
    const inventory = join(dir, '..', `${dir.split('/').pop()}-inventory.json`);
    writeFileSync(inventory, JSON.stringify([{ id: 'd1', region: 'prod', labels: {}, apps: {} }]));
    dirs.push(inventory);
    const refused = await cascade(['plan', dir, '--inventory', inventory]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('apps/web.yaml:8:12: App "web" artifact of version "1.0.0": ');
    const allowed = await cascade(['plan', dir, '--inventory', inventory, '--allow-artifact-origin', 'http://127.0.0.1:8081/']);
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(allowed.stdout).toContain('d1');
  });

  it('accepts plain http: only where the App, the Regions or a flag allow it', async () => {
    const url = 'http://artifacts.lab.example/web.tgz';
    const refused = fleet({ 'apps/web.yaml': appWithUrls([url]).text, 'deployments/web.yaml': deployment('web', '1.0.0') });
    const everywhere = await validate(refused);
    expect(everywhere.problems).toEqual([
      expect.objectContaining({ path: 'deployments/web.yaml', line: 7, col: 12, code: 'artifact-url-refused', message: expect.stringContaining('it selects devices in every region') }),
    ]);
    expect(await validate(refused, '--allow-http-artifacts')).toMatchObject({ code: 0 });
    expect(await validate(refused, '--allow-artifact-origin', 'http://artifacts.lab.example/')).toMatchObject({ code: 0 });

    const prod = fleet({ 'apps/web.yaml': appWithUrls([url]).text, 'deployments/web.yaml': deployment('web', '1.0.0', ['lab', 'prod']) });
    expect((await validate(prod)).problems).toEqual([expect.objectContaining({ path: 'deployments/web.yaml', code: 'artifact-url-refused', message: expect.stringContaining('region "prod" does not set spec.allowHttpArtifacts: true') })]);

    const lab = fleet({ 'apps/web.yaml': appWithUrls([url]).text, 'deployments/web.yaml': deployment('web', '1.0.0', ['lab']) });
    expect(await validate(lab)).toMatchObject({ code: 0, problems: [] });

    const byApp = fleet({ 'apps/web.yaml': appWithUrls([url], 'allowHttpArtifacts: true').text, 'deployments/web.yaml': deployment('web', '1.0.0') });
    expect(await validate(byApp)).toMatchObject({ code: 0, problems: [] });
    // Allowing http: never allows a local host.
    const local = fleet({ 'apps/web.yaml': appWithUrls(['http://169.254.169.254/x'], 'allowHttpArtifacts: true').text });
    expect((await validate(local, '--allow-http-artifacts')).problems.map((p) => p.code)).toEqual(['artifact-url-refused']);
  });

  it('refuses command templates whose placeholders cannot be passed safely', async () => {
    const text = [
      'apiVersion: cascade/v1',
      'kind: App',
      'metadata:',
      '  name: web',
      'spec:',
      '  runtime:',
      '    type: exec',
      `    install: "tar -xf '{artifact}'"`,
      '    start: ["{version}", "--run"]',
      '    stop: "kill $(( {version} ))"',
      '  healthCheck:',
      '    exec: ["/usr/bin/curl", "-f", "http://127.0.0.1/{version}"]',
      '',
    ].join('\n');
    const { code, problems } = await validate(fleet({ 'apps/web.yaml': text }));
    expect(code).toBe(1);
    expect(problems).toEqual([
      expect.objectContaining({ line: 8, col: 14, code: 'command-template-unsafe', message: expect.stringContaining('{artifact} is inside single quotes') }),
      expect.objectContaining({ line: 9, col: 12, code: 'command-template-unsafe', message: expect.stringContaining('program to run') }),
      expect.objectContaining({ line: 10, col: 11, code: 'command-template-unsafe', message: expect.stringContaining('$((') }),
    ]);
  });
});

describe('cascade validate names what it does not follow', { timeout: 180_000 }, () => {
  it('warns about a symlink and a submodule in the working tree and in a commit, naming the path, without failing', async () => {
    const dir = fleet({ 'apps/web.yaml': 'apiVersion: cascade/v1\nkind: App\nmetadata:\n  name: web\n' });
    const target = join(dir, '..', `${dir.split('/').pop()}-outside.yaml`);
    writeFileSync(target, 'apiVersion: cascade/v1\nkind: App\nmetadata:\n  name: outside\n');
    dirs.push(target);
    symlinkSync(target, join(dir, 'apps/linked.yaml'));
    symlinkSync('/etc', join(dir, 'etc-link'));
    const git = (...args: string[]) => execFileSync('git', args, { cwd: dir, env: GIT_ENV, encoding: 'utf8' }).trim();
    git('init', '-q', '-b', 'main');
    git('add', '-A');
    // A submodule is a "gitlink" entry in the tree: mode 160000 pointing at a commit of another repository.
    git('update-index', '--add', '--cacheinfo', `160000,${'b'.repeat(40)},vendor/fleet`);
    git('commit', '-q', '-m', 'fleet with links');
    mkdirSync(join(dir, 'vendor/fleet'), { recursive: true });
    writeFileSync(join(dir, 'vendor/fleet/.git'), 'gitdir: ../../.git/modules/fleet\n');
    writeFileSync(join(dir, 'vendor/fleet/app.yaml'), 'apiVersion: cascade/v1\nkind: App\nmetadata:\n  name: vendored\n');

    for (const extra of [[], ['--rev', 'main']]) {
      const { code, problems, warnings } = await validate(dir, ...extra);
      expect(code, extra.join(' ')).toBe(0);
      expect(problems).toEqual([]);
      expect(warnings.map((w) => [w.path, w.code])).toEqual([
        ['apps/linked.yaml', 'symlink-not-followed'],
        ['etc-link', 'symlink-not-followed'],
        ['vendor/fleet', 'submodule-not-followed'],
      ]);
      const text = await cascade(['validate', dir, ...extra]);
      expect(text.code).toBe(0);
      expect(text.stderr).toContain('apps/linked.yaml:1:1: warning: symlink not followed');
      expect(text.stderr).toContain('vendor/fleet:1:1: warning: submodule not followed');
      expect(text.stdout).toContain('valid (1 apps');
    }
  });
});
