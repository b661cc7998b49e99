import { Command, CommanderError } from 'commander';
import { isCascadeError } from '../core/errors.js';
import { registerCommands } from './commands/index.js';

export function buildProgram(): Command {
  const program = new Command('cascade')
    .description('Declarative GitOps reconciler for fleets of edge devices')
    .version('0.1.0')
    .showHelpAfterError('(run `cascade --help` for the list of commands)');
  registerCommands(program);
  return program;
}

/** Runs the CLI. Errors print as `cascade: <message> [code]` and exit 2, unless a command chose its own exit code. */
export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  program.exitOverride();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode;
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
