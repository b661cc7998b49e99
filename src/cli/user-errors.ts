import { CommanderError, type Command, type Option } from 'commander';
import { CascadeError } from '../core/errors.js';

/**
 * Every mistake a user can make on the command line ends the same way: one line
 * `cascade: <what, where, what to do> [code]` on stderr and exit 2, never commander's own wording,
 * exit 1 or a stack trace. This module turns commander's parse errors into CascadeErrors.
 *
 * Required flags are checked here, after commander has reported unknown options: commander checks
 * them first, so a typo `--regoin` would otherwise read "required option --region not specified".
 */

/** Commander's error codes and ours: scripts and tests match on these. */
const CODES: Record<string, string> = {
  'commander.unknownOption': 'unknown-option',
  'commander.unknownCommand': 'unknown-command',
  'commander.missingArgument': 'missing-argument',
  'commander.optionMissingArgument': 'missing-option-value',
  'commander.missingMandatoryOptionValue': 'missing-option',
  'commander.invalidArgument': 'invalid-argument',
  'commander.excessArguments': 'too-many-arguments',
  'commander.conflictingOption': 'conflicting-options',
};

/** Exits that are not failures (or already explained by the help commander printed). */
const PASS_THROUGH = new Set(['commander.helpDisplayed', 'commander.version', 'commander.help', 'commander.executeSubCommandAsync']);

/** Applies the rules above to `program` and every command under it; call after every command is registered. */
export function configureUserErrors(program: Command): void {
  for (const command of allCommands(program)) {
    command.showSuggestionAfterError(true);
    command.showHelpAfterError(false);
    // Commander's own line is replaced by ours, printed once by main().
    command.configureOutput({ outputError: () => {} });
    command.exitOverride((err) => {
      throw PASS_THROUGH.has(err.code) ? err : fromCommanderError(err, command);
    });
    const required = command.options.filter((option) => option.mandatory);
    if (required.length === 0) continue;
    for (const option of required) option.mandatory = false;
    command.hook('preAction', (_hooked, actionCommand) => {
      if (actionCommand !== command) return;
      for (const option of required) {
        if (command.getOptionValue(option.attributeName()) === undefined) throw missingOption(command, option);
      }
    });
  }
}

/** `cascade devices list`, for messages. */
export function commandPath(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

function fromCommanderError(err: CommanderError, command: Command): CascadeError {
  const code = CODES[err.code] ?? 'invalid-arguments';
  const path = commandPath(command);
  // "error: unknown option '--regoin'\n(Did you mean --region?)" -> "unknown option '--regoin'; did you mean --region?"
  let what = err.message.replace(/^error:\s*/, '');
  const suggestion = /\s*\(Did you mean ([^)]*)\)\s*$/s.exec(what);
  if (suggestion) what = what.slice(0, suggestion.index);
  what = what.replace(/\.\s*$/, '').replace(/\s*\n\s*/g, ' ');
  const typed = /^unknown option '(--[^'=]+)/.exec(what)?.[1];
  const byPrefix = typed ? prefixSuggestion(typed, command) : undefined;
  // An exact start of a longer flag beats commander's guess: `--region` is `--region-url`, not `--version`.
  const guess = byPrefix?.distance === 0 ? byPrefix.flag : (suggestion?.[1]!.replace(/\?$/, '') ?? byPrefix?.flag);
  if (guess) what += `; did you mean ${guess}?`;
  const where = command.parent ? `${path.replace(/^cascade /, '')}: ` : '';
  return new CascadeError(code, `${where}${what} (see \`${path} --help\`)`, { commander: err.code }, { retry: 'final' });
}

/**
 * Commander suggests flags a few edits away; a flag that is the start of a longer one (`--region` for
 * `--region-url`), or a typo of that start (`--regoin`), is one too.
 */
function prefixSuggestion(typed: string, command: Command): { flag: string; distance: number } | undefined {
  let best: { flag: string; distance: number } | undefined;
  for (let c: Command | null = command; c; c = c.parent) {
    for (const option of c.options) {
      const flag = option.long;
      if (!flag || flag.length <= typed.length) continue;
      const head = flag.slice(0, typed.length);
      if (flag[typed.length] !== '-') continue; // only whole words: --region of --region-url
      const distance = editDistance(typed, head);
      if (distance <= Math.max(1, Math.floor((typed.length - 2) / 4)) && (!best || distance < best.distance)) best = { flag, distance };
    }
  }
  return best;
}

/** Levenshtein distance with adjacent transpositions (optimal string alignment). */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

function missingOption(command: Command, option: Option): CascadeError {
  const path = commandPath(command);
  const ways = [option.envVar ? `set ${option.envVar}` : '', option.long === '--region-url' || option.long === '--hub-url' ? `save it in a context (\`cascade context add NAME ${option.long} URL\`)` : '']
    .filter(Boolean)
    .join(', or ');
  const env = ways ? ` (or ${ways})` : '';
  const what = option.description ? ` (${option.description})` : '';
  return new CascadeError('missing-option', `${path.replace(/^cascade /, '')} needs ${option.flags}${what}: pass it${env} (see \`${path} --help\`)`, { option: option.long }, { retry: 'final' });
}

function allCommands(root: Command): Command[] {
  const out: Command[] = [root];
  for (let i = 0; i < out.length; i++) out.push(...out[i]!.commands);
  return out;
}

/**
 * `cascade devices list | head`: once the reader is gone, the rest of the output has nowhere to go.
 * End quietly instead of dying with `Error: write EPIPE`.
 */
export function endQuietlyOnClosedPipe(stream: NodeJS.WriteStream = process.stdout): void {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED') process.exit(process.exitCode ?? 0);
    throw err;
  });
}
