/**
 * Commands of an App (`runtime.install`, `start`, `stop`, `healthCheck.exec`) and how values reach them.
 *
 * Promise: no value (version, artifact path, app name) ever becomes shell code, whatever quoting
 * the template uses and in whatever order placeholders appear.
 * - A list of arguments runs without a shell: a placeholder becomes (part of) one argument, as data.
 *   A program (the first element) that holds a placeholder must be an absolute path
 *   (`/opt/web/{version}/bin/web`, or `{artifact}`, the verified download): a value never picks a
 *   program from PATH.
 * - A string runs with /bin/sh -c, but the values are never spliced into it: each placeholder is
 *   replaced by a reference to an environment variable (`{version}` -> `"${CASCADE_VERSION}"`, or
 *   `${CASCADE_VERSION}` inside double quotes), and the shell expands it as data. Placeholders in a
 *   context where that cannot work (inside single quotes, `$'...'`, `${...}`, `$((...))`, a
 *   here-document, after a backslash) are refused, at validation and again on the device.
 * Substitution is one pass over the template, so a value can never introduce another placeholder.
 */
import type { CommandTemplate } from './app-spec.js';
import { CascadeError } from './errors.js';

/** Each placeholder and the environment variable that carries its value. */
export const PLACEHOLDER_ENV = {
  version: 'CASCADE_VERSION',
  artifact: 'CASCADE_ARTIFACT',
  app: 'CASCADE_APP',
} as const;
export type PlaceholderName = keyof typeof PLACEHOLDER_ENV;

const PLACEHOLDER = /\{(version|artifact|app)\}/g;

export interface CommandValues {
  app: string;
  version: string;
  artifact: string | null;
}

/** What to spawn: a program and its arguments, never through a shell unless `file` is /bin/sh from a string template. */
export interface PreparedCommand {
  file: string;
  args: string[];
  env: Record<string, string>;
  /** For logs: the template as written (values are in the environment). */
  display: string;
}

export const COMMAND_TEMPLATE_UNSAFE = 'command-template-unsafe';

/** Does the template use `{name}` anywhere? */
export function usesPlaceholder(template: CommandTemplate, name: PlaceholderName): boolean {
  const needle = `{${name}}`;
  return typeof template === 'string' ? template.includes(needle) : template.some((arg) => arg.includes(needle));
}

/** Why this template cannot be run safely, or null when it can. */
export function commandTemplateProblem(template: CommandTemplate): string | null {
  if (Array.isArray(template)) {
    const program = template[0];
    if (program === undefined || program === '') return 'the first element (the program to run) is empty';
    PLACEHOLDER.lastIndex = 0;
    if (PLACEHOLDER.test(program) && !program.startsWith('/') && !program.startsWith('{artifact}')) {
      return `the program to run (first element "${program}") holds a placeholder but is not an absolute path; name the program in the App (e.g. /opt/app/{version}/bin/app) and pass values as later arguments`;
    }
    return null;
  }
  return renderShell(template).problem;
}

/** The command to spawn for `template` with `values`; throws CascadeError(COMMAND_TEMPLATE_UNSAFE) for a template that cannot be made safe. */
export function prepareCommand(template: CommandTemplate, values: CommandValues): PreparedCommand {
  const env = {
    [PLACEHOLDER_ENV.app]: values.app,
    [PLACEHOLDER_ENV.version]: values.version,
    [PLACEHOLDER_ENV.artifact]: values.artifact ?? '',
  };
  const problem = commandTemplateProblem(template);
  if (problem) throw new CascadeError(COMMAND_TEMPLATE_UNSAFE, `command ${JSON.stringify(template)} refused: ${problem}`);
  if (Array.isArray(template)) {
    const text: Record<PlaceholderName, string> = { app: values.app, version: values.version, artifact: values.artifact ?? '' };
    const [file, ...args] = template.map((arg) => arg.replace(PLACEHOLDER, (_, name: PlaceholderName) => text[name]));
    return { file: file!, args, env, display: JSON.stringify(template) };
  }
  return { file: '/bin/sh', args: ['-c', renderShell(template).command], env, display: template };
}

type Context = 'plain' | 'double' | 'single' | 'ansi' | 'backtick' | 'subst' | 'paren' | 'param' | 'arith';

const REFUSED_IN: Partial<Record<Context, string>> = {
  single: 'inside single quotes, where the shell cannot expand it; remove the quotes or use double quotes',
  ansi: "inside $'...', where the shell cannot expand it; use double quotes",
  param: 'inside ${...}; use the environment variable (e.g. ${CASCADE_VERSION:-...}) directly',
  arith: 'inside $((...)), where a value would be evaluated as arithmetic; compare versions in a script instead',
};

/**
 * Replaces each placeholder of a /bin/sh line by a reference to its environment variable, choosing
 * the form by the quoting context the placeholder is in (a small POSIX sh lexer), or says why it cannot.
 */
function renderShell(template: string): { command: string; problem: string | null } {
  const stack: Context[] = ['plain'];
  const top = () => stack[stack.length - 1]!;
  let out = '';
  let problem: string | null = null;
  let hereDocument = false;
  let placeholders = 0;
  let i = 0;
  const refuse = (name: string, why: string) => {
    problem ??= `{${name}} is ${why}`;
  };
  while (i < template.length) {
    const context = top();
    PLACEHOLDER.lastIndex = i;
    const placeholder = template[i] === '{' ? PLACEHOLDER.exec(template) : null;
    if (placeholder && placeholder.index === i) {
      const name = placeholder[1] as PlaceholderName;
      const variable = PLACEHOLDER_ENV[name];
      placeholders++;
      const refused = REFUSED_IN[context];
      if (refused) refuse(name, refused);
      else if (hereDocument) refuse(name, 'after a here-document (<<), where quotes are not removed; read the environment variable instead');
      out += context === 'double' ? `\${${variable}}` : `"\${${variable}}"`;
      i += placeholder[0].length;
      continue;
    }
    const c = template[i]!;
    const next = template[i + 1];
    if (c === '\\' && context !== 'single') {
      // An escaped character is literal; an escaped placeholder would leave our quotes unbalanced.
      if (next === '{' && template.startsWith('{', i + 1)) {
        PLACEHOLDER.lastIndex = i + 1;
        const escaped = PLACEHOLDER.exec(template);
        if (escaped && escaped.index === i + 1) refuse(escaped[1]!, 'escaped with a backslash; remove the backslash');
      }
      out += template.slice(i, i + 2);
      i += 2;
      continue;
    }
    out += c;
    i++;
    switch (context) {
      case 'single':
        if (c === "'") stack.pop();
        break;
      case 'ansi':
        if (c === "'") stack.pop();
        break;
      case 'double':
        if (c === '"') stack.pop();
        else if (c === '`') stack.push('backtick');
        else if (c === '$') openDollar();
        break;
      case 'param':
        if (c === '}') stack.pop();
        else if (c === '"') stack.push('double');
        else if (c === "'") stack.push('single');
        else if (c === '`') stack.push('backtick');
        else if (c === '$') openDollar();
        break;
      case 'arith':
        if (c === '(') stack.push('paren');
        else if (c === ')' && next === ')') {
          out += next;
          i++;
          stack.pop();
        } else if (c === '$') openDollar();
        break;
      default:
        // plain, backtick, subst, paren: unquoted command text.
        if (c === "'") stack.push('single');
        else if (c === '"') stack.push('double');
        else if (c === '`') {
          if (context === 'backtick') stack.pop();
          else stack.push('backtick');
        } else if (c === '$') openDollar();
        else if (c === '(') stack.push('paren');
        else if (c === ')' && (context === 'subst' || context === 'paren')) stack.pop();
        else if (c === '<' && next === '<') hereDocument = true;
        else if (c === '#' && (i === 1 || /[\s;&|()`]/.test(template[i - 2]!))) {
          // A comment runs to the end of the line; its quotes and placeholders mean nothing.
          const end = template.indexOf('\n', i);
          const stop = end === -1 ? template.length : end;
          out += template.slice(i, stop);
          i = stop;
        }
    }
  }
  if (placeholders > 0 && stack.length > 1 && problem === null) {
    problem = `the command has an unterminated ${describeContext(top())}, so where its placeholders stand cannot be told`;
  }
  return { command: out, problem };

  function openDollar(): void {
    const rest = template.slice(i);
    if (rest.startsWith('((')) {
      out += '((';
      i += 2;
      stack.push('arith');
    } else if (rest.startsWith('(')) {
      out += '(';
      i += 1;
      stack.push('subst');
    } else if (rest.startsWith('{')) {
      out += '{';
      i += 1;
      stack.push('param');
    } else if (rest.startsWith("'") && top() !== 'double') {
      out += "'";
      i += 1;
      stack.push('ansi');
    }
  }
}

function describeContext(context: Context): string {
  switch (context) {
    case 'single':
    case 'ansi':
      return "single quote (')";
    case 'double':
      return 'double quote (")';
    case 'backtick':
      return 'backtick (`)';
    case 'param':
      return '${';
    default:
      return 'parenthesis';
  }
}
