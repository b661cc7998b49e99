import { readFileSync } from 'node:fs';
import { Help, type Command } from 'commander';

type Register = (program: Command) => void;

/**
 * Each command lives in its own file and exports `register(program)`. The order here is the order
 * of `cascade --help`. A command's module is imported only when the command line may need it:
 * `cascade agent ...` loads the agent's file alone, so a device pays neither for the region's
 * imports nor for the others' in memory and start-up time; help and unknown commands load them all.
 */
const COMMANDS: ReadonlyArray<readonly [name: string, load: () => Promise<Register>]> = [
  ['init', async () => (await import('./init.js')).registerInit],
  ['validate', async () => (await import('./validate.js')).registerValidate],
  ['plan', async () => (await import('./plan.js')).registerPlan],
  ['diff', async () => (await import('./diff.js')).registerDiff],
  ['region', async () => (await import('./region.js')).registerRegion],
  ['agent', async () => (await import('./agent.js')).registerAgent],
  ['simulate', async () => (await import('./simulate.js')).registerSimulate],
  ['status', async () => (await import('./status.js')).registerStatus],
  ['reconcile', async () => (await import('./reconcile.js')).registerReconcile],
  ['history', async () => (await import('./history.js')).registerHistory],
  ['events', async () => (await import('./events.js')).registerEvents],
  ['rollback', async () => (await import('./rollback.js')).registerRollback],
  ['rollout', async () => (await import('./rollout.js')).registerRollout],
  ['devices', async () => (await import('./devices.js')).registerDevices],
  ['hub', async () => (await import('./hub.js')).registerHub],
  ['context', async () => (await import('./context.js')).registerContext],
  ['demo', async () => (await import('./demo.js')).registerDemo],
];

/** The names of the top-level commands, in the order of `cascade --help`. */
export const COMMAND_NAMES: readonly string[] = COMMANDS.map(([name]) => name);

/** What `cascade --help` shows of a command: its term (`plan [options] [dir]`) and description. */
export interface CommandSummary {
  name: string;
  term: string;
  description: string;
}

/**
 * The summaries of the commands registered on `program`, as its help shows them. `npm run build`
 * writes them beside the compiled commands (HELP_SUMMARY_FILE), so `cascade --help` need not load
 * every command's module to list them.
 */
export function commandSummaries(program: Command): CommandSummary[] {
  const help = program.createHelp();
  return program.commands.map((command) => ({ name: command.name(), term: help.subcommandTerm(command), description: help.subcommandDescription(command) }));
}

export const HELP_SUMMARY_FILE = 'help-summary.json';

/**
 * Registers one stand-in per command, with the term and description help shows and nothing else:
 * enough for `cascade --help` (and `cascade` alone), which only lists them.
 */
export function registerSummaries(program: Command, summaries: readonly CommandSummary[]): void {
  const terms = new Map(summaries.map((summary) => [summary.name, summary.term]));
  for (const summary of summaries) program.command(summary.name).description(summary.description);
  const standard = new Help();
  program.configureHelp({ subcommandTerm: (command) => terms.get(command.name()) ?? standard.subcommandTerm(command) });
}

/** The summaries written by the build beside this module, or null (sources run through tsx, or an old build). */
function builtSummaries(): CommandSummary[] | null {
  try {
    const summaries = JSON.parse(readFileSync(new URL(HELP_SUMMARY_FILE, import.meta.url), 'utf8')) as CommandSummary[];
    const names = summaries.map((summary) => summary.name);
    return names.join('\0') === COMMAND_NAMES.join('\0') ? summaries : null;
  } catch {
    return null;
  }
}

/** `cascade`, `cascade --help`, `cascade -h`: the root help, which lists commands only. */
const isRootHelp = (args: readonly string[]): boolean => args.length === 0 || (args.length === 1 && (args[0] === '--help' || args[0] === '-h'));

/**
 * Registers the command `args[0]` names (the arguments after `cascade`), or every command when it
 * names none (`cascade help agent`, a global option first, a typo that commander then answers with
 * "did you mean"). The root help registers the build's summaries instead, when there are some
 * (`built`: those beside this module).
 */
export async function registerCommands(program: Command, args: readonly string[] = [], built: () => readonly CommandSummary[] | null = builtSummaries): Promise<void> {
  const summaries = isRootHelp(args) ? built() : null;
  if (summaries) {
    registerSummaries(program, summaries);
    return;
  }
  const named = COMMANDS.find(([name]) => name === args[0]);
  const registers = await Promise.all((named ? [named] : COMMANDS).map(([, load]) => load()));
  for (const register of registers) register(program);
}
