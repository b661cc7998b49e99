import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { COMMAND_NAMES, HELP_SUMMARY_FILE, commandSummaries } from '../../src/cli/commands/index.js';
import { buildProgram } from '../../src/cli/main.js';
import { runCli } from '../support/run-cli.js';

/**
 * `cascade --help` lists the commands from the summaries the build wrote (issue 11, "Quick CLI") instead
 * of loading every command's module: it must read exactly as the help with every command loaded.
 */
describe('the root help from the build summaries', () => {
  it('reads exactly like the help with every command loaded, and loads no command', async () => {
    const full = await buildProgram(['help']);
    const summaries = commandSummaries(full);
    expect(summaries.map((s) => s.name)).toEqual(COMMAND_NAMES);
    const light = await buildProgram(['--help'], () => summaries);
    expect(light.helpInformation()).toBe(full.helpInformation());
    // Stand-ins: no options, no arguments, no action of their own.
    expect(light.commands.every((command) => command.options.length === 0 && command.registeredArguments.length === 0)).toBe(true);
    // Any other command line loads the real commands.
    const plan = await buildProgram(['plan', '--help'], () => summaries);
    expect(plan.commands.find((command) => command.name() === 'plan')?.options.length).toBeGreaterThan(0);
  });

  it('is what the built CLI prints, when dist/ is built from these sources', async () => {
    // Not built from these sources: bin/cascade.js runs them through tsx, with no summaries, loading every command.
    if (spawnSync(process.execPath, [fileURLToPath(new URL('../../scripts/build-dist.mjs', import.meta.url)), '--check']).status !== 0) return;
    const file = fileURLToPath(new URL(`../../dist/cli/commands/${HELP_SUMMARY_FILE}`, import.meta.url));
    expect(existsSync(file)).toBe(true);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual(commandSummaries(await buildProgram(['help'])));
    const run = await runCli(['--help']);
    expect(run.code).toBe(0);
    for (const name of COMMAND_NAMES) expect(run.stdout).toMatch(new RegExp(`^  ${name}\\b`, 'm'));
    expect(run.stdout).toContain('help [command]');
  });
});
