import { Command } from 'commander';
import { CascadeError } from '../../core/errors.js';
import { checkContextName, configPath, expandHome, readConfig, writeConfig, type CascadeContext } from '../config/contexts.js';

interface AddFlags {
  regionUrl?: string;
  hubUrl?: string;
  operatorTokenFile?: string;
  hubTokenFile?: string;
  use?: boolean;
}

/** `cascade context add|use|list|remove`: named region/hub addresses and token files (see config/contexts.ts). */
export function registerContext(program: Command): void {
  const context = program
    .command('context')
    .description(`named contexts (region URL, hub URL, token files) so commands need no --region-url; kept in ${displayPath()}`);

  context
    .command('add')
    .description('add a context, or change the fields given of an existing one')
    .argument('<name>', 'context name')
    .option('--region-url <url>', 'URL of the region')
    .option('--hub-url <url>', 'URL of the hub')
    .option('--operator-token-file <file>', "file holding the region's operator token")
    .option('--hub-token-file <file>', "file holding the hub's read token")
    .option('--use', 'make it the current context')
    .action((name: string, flags: AddFlags) => {
      checkContextName(name);
      for (const url of [flags.regionUrl, flags.hubUrl]) if (url !== undefined) checkUrl(url);
      const path = configPath();
      const config = readConfig(path);
      const existed = name in config.contexts;
      const next: CascadeContext = { ...config.contexts[name] };
      if (flags.regionUrl !== undefined) next['region-url'] = flags.regionUrl;
      if (flags.hubUrl !== undefined) next['hub-url'] = flags.hubUrl;
      if (flags.operatorTokenFile !== undefined) next['operator-token-file'] = absoluteFile(flags.operatorTokenFile);
      if (flags.hubTokenFile !== undefined) next['hub-token-file'] = absoluteFile(flags.hubTokenFile);
      if (Object.keys(next).length === 0) {
        throw new CascadeError('context-empty', `context add ${name}: give at least one of --region-url, --hub-url, --operator-token-file, --hub-token-file`);
      }
      config.contexts[name] = next;
      const becomesCurrent = flags.use || config['current-context'] === undefined;
      if (becomesCurrent) config['current-context'] = name;
      writeConfig(config, path);
      process.stdout.write(`${existed ? 'Updated' : 'Added'} context ${name}${becomesCurrent ? ' (current)' : ''} in ${path}\n`);
    });

  context
    .command('use')
    .description('make a context the current one')
    .argument('<name>', 'context name')
    .action((name: string) => {
      const path = configPath();
      const config = readConfig(path);
      if (!(name in config.contexts)) throw unknown(name, config.contexts, path);
      config['current-context'] = name;
      writeConfig(config, path);
      process.stdout.write(`Switched to context ${name}\n`);
    });

  context
    .command('list')
    .alias('ls')
    .description('every context; * marks the current one')
    .option('--json', 'print the contexts as JSON')
    .action((flags: { json?: boolean }) => {
      const path = configPath();
      const config = readConfig(path);
      const names = Object.keys(config.contexts).sort();
      if (flags.json) {
        process.stdout.write(JSON.stringify({ path, current: config['current-context'] ?? null, contexts: config.contexts }, null, 2) + '\n');
        return;
      }
      if (names.length === 0) {
        process.stdout.write(`No contexts in ${path}; add one with \`cascade context add NAME --region-url URL\`\n`);
        return;
      }
      const rows = [['CURRENT', 'NAME', 'REGION URL', 'HUB URL', 'TOKEN FILES']];
      for (const name of names) {
        const c = config.contexts[name]!;
        const tokens = [c['operator-token-file'] && `operator: ${c['operator-token-file']}`, c['hub-token-file'] && `hub: ${c['hub-token-file']}`].filter(Boolean).join(', ');
        rows.push([name === config['current-context'] ? '*' : '', name, c['region-url'] ?? '-', c['hub-url'] ?? '-', tokens || '-']);
      }
      const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
      for (const row of rows) process.stdout.write(row.map((cell, i) => (i < row.length - 1 ? cell.padEnd(widths[i]!) : cell)).join('  ') + '\n');
    });

  context
    .command('remove')
    .alias('rm')
    .description('delete a context (the token files stay)')
    .argument('<name>', 'context name')
    .action((name: string) => {
      const path = configPath();
      const config = readConfig(path);
      if (!(name in config.contexts)) throw unknown(name, config.contexts, path);
      delete config.contexts[name];
      const wasCurrent = config['current-context'] === name;
      if (wasCurrent) delete config['current-context'];
      writeConfig(config, path);
      process.stdout.write(`Removed context ${name}${wasCurrent ? '; no context is current now (`cascade context use NAME`)' : ''}\n`);
    });
}

function unknown(name: string, contexts: Record<string, unknown>, path: string): CascadeError {
  const known = Object.keys(contexts).sort();
  return new CascadeError('unknown-context', `no context "${name}" in ${path}; known: ${known.join(', ') || 'none'}`);
}

function checkUrl(url: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new CascadeError('invalid-arguments', `${JSON.stringify(url)} is not a URL; use e.g. https://region.example:8080`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new CascadeError('invalid-arguments', `${url}: only http and https URLs are supported`);
}

/** Token files are kept as absolute paths, so a context works from any folder. */
function absoluteFile(file: string): string {
  const expanded = expandHome(file);
  return expanded.startsWith('/') ? expanded : `${process.cwd()}/${expanded}`;
}

function displayPath(): string {
  return '$XDG_CONFIG_HOME/cascade/config.yaml (~/.config/cascade/config.yaml)';
}

