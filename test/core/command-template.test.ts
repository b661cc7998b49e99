import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../../src/agent/shell.js';
import { commandTemplateProblem, prepareCommand } from '../../src/core/command-template.js';
import { isValidVersion } from '../../src/core/version.js';

let dir: string;
let marker: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'cascade-template-'));
  marker = join(dir, 'PWNED');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Values that would run `touch MARKER` if they reached the shell as code, in every quoting context. */
function hostileValues(): string[] {
  const m = () => marker;
  const base = [
    `1.0.2$(touch ${m()})`,
    `1.0.2\`touch ${m()}\``,
    `1;touch ${m()}`,
    `1&&touch ${m()}`,
    `1|touch ${m()}`,
    `1\ntouch ${m()}`,
    `1' ; touch ${m()} ; '`,
    `1" ; touch ${m()} ; "`,
    `1\\" ; touch ${m()} ; \\"`,
    `'"$(touch ${m()})"'`,
    `$(touch ${m()})`,
    `\${IFS}$(touch\${IFS}${m()})`,
    `{artifact}`,
    `{version}{app}`,
    `) ; touch ${m()} ; (`,
    `} ; touch ${m()} ; {`,
    `\`\` ; touch ${m()}`,
    `*`,
    `-rf`,
    `a[$(touch ${m()})]`,
    `$'\\x27'; touch ${m()}`,
  ];
  // A deterministic spray of shell metacharacters around the payload.
  const meta = ['"', "'", '`', '$', '(', ')', ';', '&', '|', '\\', '\n', '{', '}', '<', '>', ' ', '#'];
  let seed = 12345;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
  for (let i = 0; i < 20; i++) {
    let value = '';
    for (let j = 0; j < 6; j++) value += meta[next() % meta.length];
    base.push(`${value}$(touch ${m()})${value}`, `${value}\`touch ${m()}\`${value}`);
  }
  return base;
}

/**
 * Templates in every quoting style; each prints the value it was given. An unquoted `...` or $(...)
 * splits its output into words (ordinary shell behaviour, not code), so only the others print it exactly.
 */
const SPLITS_WORDS = new Set(['printf %s `printf %s {version}`', 'printf %s $(printf %s {version})']);
const TEMPLATES: Array<string | string[]> = [
  'printf %s {version}',
  'printf %s "{version}"',
  'printf %s "v={version}"',
  'printf %s `printf %s {version}`',
  'printf %s "`printf %s {version}`"',
  'printf %s $(printf %s {version})',
  'printf %s "$(printf %s "{version}")"',
  'x={version}; printf %s "$x"',
  'printf %s {version} # {version}',
  ['/usr/bin/printf', '%s', '{version}'],
  ['/usr/bin/printf', '%s', 'v={version}'],
];

describe('command templates: values are data, never code', () => {
  it('runs every quoting style with every hostile value without running the payload, and passes the exact value', async () => {
    const values = hostileValues();
    for (const template of TEMPLATES) {
      expect(commandTemplateProblem(template), JSON.stringify(template)).toBeNull();
      for (const version of values) {
        const command = prepareCommand(template, { app: 'web', version, artifact: `${dir}/a b/artifact` });
        // The value is nowhere in what the shell parses.
        if (typeof template === 'string') expect(command.args.join(' ')).not.toContain('touch');
        const result = await runCommand(command, { cwd: dir, timeoutMs: 10_000 });
        expect(existsSync(marker), `${JSON.stringify(template)} with ${JSON.stringify(version)}`).toBe(false);
        expect(result.exitCode).toBe(0);
        if (typeof template === 'string' && SPLITS_WORDS.has(template)) continue;
        const printed = template.toString().includes('v=') ? `v=${version}` : version;
        expect(result.outputTail, `${JSON.stringify(template)} with ${JSON.stringify(version)}`).toBe(printed.trim());
      }
    }
    expect(readdirSync(dir)).toEqual([]);
  });

  it('substitutes in one pass: a value holding a placeholder stays literal', () => {
    const command = prepareCommand(['/bin/echo', '{version}', '{artifact}', '{app}'], { app: '{version}', version: '{artifact}', artifact: '{app}' });
    expect(command.args).toEqual(['{artifact}', '{app}', '{version}']);
    const shell = prepareCommand('echo {artifact} {version}', { app: 'a', version: '{artifact}', artifact: '/x' });
    expect(shell.args[1]).toBe('echo "${CASCADE_ARTIFACT}" "${CASCADE_VERSION}"');
    expect(shell.env).toMatchObject({ CASCADE_VERSION: '{artifact}', CASCADE_ARTIFACT: '/x', CASCADE_APP: 'a' });
  });

  it('reads comments as comments', () => {
    expect(commandTemplateProblem("install-web {version} # it's fine")).toBeNull();
    expect(prepareCommand("install-web {version} # it's {version}", { app: 'a', version: '1', artifact: null }).args[1]).toBe('install-web "${CASCADE_VERSION}" # it\'s {version}');
    expect(commandTemplateProblem("echo a#'{version}'")).toMatch(/single quotes/);
  });

  it('refuses the forms that cannot be made safe, naming why', () => {
    const refused: Array<[string | string[], RegExp]> = [
      ["printf %s '{version}'", /inside single quotes/],
      ["printf %s 'v={version}'", /inside single quotes/],
      ["printf %s \"$(echo '{version}')\"", /inside single quotes/],
      ["printf %s $'{version}'", /\$'/],
      ['printf %s ${X:-{version}}', /inside \$\{/],
      ['echo $(( {version} + 1 ))', /\$\(\(/],
      ['cat <<EOF\n{version}\nEOF', /here-document/],
      ['echo \\{version}', /backslash/],
      ['echo "{version}', /unterminated double quote/],
      [['{version}', '--install'], /program to run/],
      [['bin/{app}', '{version}'], /program to run/],
      [['x{artifact}'], /program to run/],
      [[''], /empty/],
    ];
    for (const [template, why] of refused) {
      expect(commandTemplateProblem(template), JSON.stringify(template)).toMatch(why);
      expect(() => prepareCommand(template, { app: 'a', version: '1', artifact: null })).toThrow(why);
    }
  });

  it('lets a list command name an absolute program path with placeholders, or the verified artifact itself', () => {
    expect(commandTemplateProblem(['/opt/{app}/{version}/bin/run', '--flag'])).toBeNull();
    expect(commandTemplateProblem(['{artifact}', '--install'])).toBeNull();
    expect(prepareCommand(['/opt/{app}/{version}/bin/run'], { app: 'web', version: '1.2.3', artifact: null }).file).toBe('/opt/web/1.2.3/bin/run');
  });

  it('runs a list command without a shell', async () => {
    const command = prepareCommand(['/bin/echo', 'a;b', '$(x)', '{version}'], { app: 'a', version: '1.0.0', artifact: null });
    const result = await runCommand(command, { timeoutMs: 10_000 });
    expect(result.outputTail).toBe('a;b $(x) 1.0.0');
    const missing = await runCommand(prepareCommand(['/no/such/program'], { app: 'a', version: '1', artifact: null }), { timeoutMs: 10_000 });
    expect(missing.exitCode).toBe(127);
    expect(missing.outputTail).toContain('/no/such/program');
  });
});

describe('version grammar', () => {
  it('accepts the versions people write and refuses anything else', () => {
    for (const ok of ['1', '1.0.0', 'v2', '2024.05.1', '1.0.0-rc.1', '1.0.0+build.7', 'latest', 'deadbeef', 'a'.repeat(128), '1_2']) expect(isValidVersion(ok), ok).toBe(true);
    for (const bad of ['', '.1', '-1', '+1', '_1', '../../x', '1/2', '/abs', '1 2', '1\n', 'a'.repeat(129), '1$(x)', '1`x`', "1'", '1"', '1;x', 'é1', '1\u0000']) {
      expect(isValidVersion(bad), JSON.stringify(bad)).toBe(false);
    }
    for (const value of hostileValues()) expect(isValidVersion(value), JSON.stringify(value)).toBe(false);
  });
});

describe('the marker really works', () => {
  it('a template that is code does run (so the assertions above can fail)', async () => {
    const result = await runCommand(prepareCommand(`touch ${marker}`, { app: 'a', version: '1', artifact: null }), { timeoutMs: 10_000 });
    expect(result.exitCode).toBe(0);
    expect(readFileSync(marker, 'utf8')).toBe('');
    rmSync(marker);
  });
});
