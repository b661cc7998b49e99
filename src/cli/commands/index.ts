import type { Command } from 'commander';

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

/**
 * Registers the command `args[0]` names (the arguments after `cascade`), or every command when it
 * names none (`cascade`, `cascade --help`, `cascade help agent`, a global option first, a typo that
 * commander then answers with "did you mean").
 */
export async function registerCommands(program: Command, args: readonly string[] = []): Promise<void> {
  const named = COMMANDS.find(([name]) => name === args[0]);
  const registers = await Promise.all((named ? [named] : COMMANDS).map(([, load]) => load()));
  for (const register of registers) register(program);
}
