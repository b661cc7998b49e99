import { Command, CommanderError, Option } from 'commander';
import { isCascadeError } from '../core/errors.js';
import { registerCommands, type CommandSummary } from './commands/index.js';
import { applyContext } from './config/apply-context.js';
import { configureUserErrors, endQuietlyOnClosedPipe } from './user-errors.js';

/**
 * The program with the command `args[0]` names, or every command (see registerCommands); for the root
 * help, stand-ins from `summaries` (default: the build's) when there are some.
 */
export async function buildProgram(args: readonly string[] = [], summaries?: () => readonly CommandSummary[] | null): Promise<Command> {
  const program = new Command('cascade')
    .description('Declarative GitOps reconciler for fleets of edge devices')
    .version('0.1.0')
    .addOption(new Option('--context <name>', 'use this context (`cascade context list`) instead of the current one').env('CASCADE_CONTEXT'));
  // Before each command's own checks: a context fills --region-url, --hub-url and tokens not given otherwise.
  program.hook('preAction', (_program, actionCommand) => applyContext(program, actionCommand));
  await registerCommands(program, args, summaries);
  configureUserErrors(program);
  return program;
}

/**
 * Runs the CLI. Every failure prints one line `cascade: <what, where, what to do> [code]` and exits 2,
 * unless a command chose its own exit code; output to a closed pipe (`| head`) ends quietly.
 */
export async function main(argv: string[]): Promise<void> {
  endQuietlyOnClosedPipe(process.stdout);
  endQuietlyOnClosedPipe(process.stderr);
  const program = await buildProgram(argv.slice(2));
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help, --version, or help printed because a subcommand is missing (a usage error: exit 2).
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    if (isCascadeError(err)) {
      process.stderr.write(`cascade: ${err.message} [${err.code}]\n`);
    } else {
      process.stderr.write(`cascade: unexpected error: ${(err as Error)?.stack ?? String(err)}\n`);
    }
    process.exitCode = 2;
  }
}
