import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/** deploy/README.md's table of variables stays in step with what `cascade region` reads. */

const ROOT = resolve(import.meta.dirname, '../..');

interface RegionVariable {
  name: string;
  /** The default as `--help` shows it, or null. */
  shownDefault: string | null;
  required: boolean;
}

async function regionVariables(): Promise<RegionVariable[]> {
  const variables: RegionVariable[] = [];
  const source = await readFile(join(ROOT, 'src/cli/commands/region.ts'), 'utf8');
  for (const line of source.split('\n')) {
    const env = /\.env\('(CASCADE_[A-Z_]+)'\)/.exec(line);
    if (!env) continue;
    const at = line.indexOf('.default(');
    // The last quoted string of `.default(value)` or `.default(value, 'shown')`.
    const quoted = at === -1 ? [] : [...line.slice(at, line.indexOf('.argParser', at) === -1 ? undefined : line.indexOf('.argParser', at)).matchAll(/'([^']*)'/g)];
    variables.push({ name: env[1]!, shownDefault: quoted.at(-1)?.[1] ?? null, required: line.includes('makeOptionMandatory()') });
  }
  const logger = await readFile(join(ROOT, 'src/cli/logger.ts'), 'utf8');
  for (const match of logger.matchAll(/process\.env\['(CASCADE_[A-Z_]+)'\](?: \?\? '([^']*)')?/g)) {
    if (!variables.some((v) => v.name === match[1])) variables.push({ name: match[1]!, shownDefault: match[2] ?? null, required: false });
  }
  return variables;
}

describe('deploy/README.md', () => {
  it('lists every variable cascade region reads, with its default', async () => {
    const readme = await readFile(join(ROOT, 'deploy/README.md'), 'utf8');
    const rows = new Map<string, string>();
    for (const line of readme.split('\n')) {
      const row = /^\| `(CASCADE_[A-Z_]+)` \|/.exec(line);
      if (row) rows.set(row[1]!, line);
    }
    const variables = await regionVariables();
    expect(variables.map((v) => v.name)).toEqual(expect.arrayContaining(['CASCADE_REPO', 'CASCADE_REGION', 'CASCADE_LISTEN', 'CASCADE_LOG_LEVEL', 'CASCADE_LOG_FORMAT']));
    for (const variable of variables) {
      const row = rows.get(variable.name);
      expect(row, `a table row for ${variable.name}`).toBeDefined();
      const defaultCell = row!.split('|')[3]!;
      if (variable.required) expect(defaultCell, variable.name).toContain('(required)');
      if (variable.shownDefault !== null) expect(defaultCell, variable.name).toContain(`\`${variable.shownDefault}\``);
    }
  });

  it('names the *_FILE variant of every secret the region reads, and says it serves HTTPS', async () => {
    const readme = await readFile(join(ROOT, 'deploy/README.md'), 'utf8');
    const source = await readFile(join(ROOT, 'src/cli/commands/region.ts'), 'utf8');
    const secrets = [...source.matchAll(/secretFrom\([^,]+, '(CASCADE_[A-Z_]+)'\)/g)].map((m) => m[1]!);
    expect(secrets.length).toBeGreaterThanOrEqual(6);
    for (const variable of secrets) expect(readme, `${variable}_FILE`).toContain(`\`${variable}_FILE\``);
    expect(readme).not.toMatch(/no `\*_FILE` variants/);
    expect(source).toContain("'--tls-cert <file>'");
    expect(readme).not.toMatch(/The region serves\s+plain HTTP:/);
    expect(readme).toContain('The region serves HTTPS itself with');
  });
});
