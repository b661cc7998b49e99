import type { Command } from 'commander';

/**
 * Each command lives in its own file and exports `register(program)`.
 * The order here is the order of `cascade --help`.
 */
export function registerCommands(program: Command): void {
  void program;
}
