import type { Command } from 'commander';
import { readTokenFile, selectContext, type ContextField } from './contexts.js';

/**
 * Fills a command's --region-url, --hub-url and token flags from the selected context, for the
 * commands that talk to a region or a hub as a client. Order: flag, then environment variable
 * (including `<VARIABLE>_FILE` for tokens), then the context. Servers (`region`, `hub`) and the
 * device agent never read contexts: they are configured where they run.
 */
const FILLS: Array<{ option: string; field: ContextField; fileVariable?: string }> = [
  { option: 'regionUrl', field: 'region-url' },
  { option: 'hubUrl', field: 'hub-url' },
  { option: 'operatorToken', field: 'operator-token-file', fileVariable: 'CASCADE_OPERATOR_TOKEN_FILE' },
  { option: 'hubToken', field: 'hub-token-file', fileVariable: 'CASCADE_HUB_READ_TOKEN_FILE' },
];

const CLIENT_COMMANDS = new Set(['status', 'plan', 'diff', 'list', 'revoke', 'reconcile', 'history', 'events', 'simulate', 'retry']);

export function applyContext(program: Command, command: Command, env: NodeJS.ProcessEnv = process.env): void {
  if (!CLIENT_COMMANDS.has(command.name()) || command.parent?.name() === 'context') return;
  const named = (program.opts() as { context?: string }).context;
  const fills = FILLS.filter(({ option }) => command.options.some((o) => o.attributeName() === option));
  // One address given (flag or variable) says which service to ask: the context does not add the other.
  // An --inventory file replaces the region's live inventory.
  const addressGiven = ['regionUrl', 'hubUrl', 'inventory'].some((option) => command.getOptionValue(option) !== undefined);
  const needed = fills.filter(
    ({ option, field, fileVariable }) =>
      command.getOptionValue(option) === undefined && !(fileVariable && env[fileVariable]) && !(addressGiven && field.endsWith('-url')),
  );
  if (needed.length === 0 && named === undefined) return;
  const selected = selectContext(named);
  if (!selected) return;
  for (const { option, field } of needed) {
    const value = selected.context[field];
    if (value === undefined) continue;
    const filled = field.endsWith('-file') ? readTokenFile(value, selected, field) : value;
    command.setOptionValueWithSource(option, filled, 'config');
  }
}
