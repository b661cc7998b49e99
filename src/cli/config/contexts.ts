import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { CascadeError } from '../../core/errors.js';

// Required when a config file is read or written, not when every command imports this file (the
// CLI's start-up): for node, `import 'yaml'` resolves to the same CommonJS module, one instance.
const yaml = (): typeof import('yaml') => createRequire(import.meta.url)('yaml') as typeof import('yaml');

/**
 * Named contexts, as kubectl, argocd and flux keep them: where a region and a hub answer and which
 * files hold their tokens, so daily commands need no --region-url. The file is
 * `$XDG_CONFIG_HOME/cascade/config.yaml` (default `~/.config/cascade/config.yaml`; `CASCADE_CONFIG`
 * names another). It holds paths to token files, never tokens. Flags and environment variables
 * always win over a context.
 *
 * ```yaml
 * current-context: eu-west
 * contexts:
 *   eu-west:
 *     region-url: https://eu-west.cascade.example:8080
 *     hub-url: https://hub.cascade.example
 *     operator-token-file: ~/.config/cascade/eu-west.token
 *     hub-token-file: ~/.config/cascade/hub-read.token
 * ```
 */

export interface CascadeContext {
  'region-url'?: string;
  'hub-url'?: string;
  'operator-token-file'?: string;
  'hub-token-file'?: string;
}

export const CONTEXT_FIELDS = ['region-url', 'hub-url', 'operator-token-file', 'hub-token-file'] as const;
export type ContextField = (typeof CONTEXT_FIELDS)[number];

export interface CascadeConfig {
  'current-context'?: string;
  contexts: Record<string, CascadeContext>;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env['CASCADE_CONFIG']) return resolve(env['CASCADE_CONFIG']);
  const base = env['XDG_CONFIG_HOME'] && isAbsolute(env['XDG_CONFIG_HOME']) ? env['XDG_CONFIG_HOME'] : join(env['HOME'] || homedir(), '.config');
  return join(base, 'cascade', 'config.yaml');
}

export function checkContextName(name: string): void {
  if (!NAME.test(name)) {
    throw new CascadeError('context-name-invalid', `context name "${name}" is invalid: use 1-63 letters, digits or '._-', starting with a letter or digit`);
  }
}

/** The config file, or an empty config when there is none. */
export function readConfig(path = configPath()): CascadeConfig {
  if (!existsSync(path)) return { contexts: {} };
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new CascadeError('config-unreadable', `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; check its permissions, or point CASCADE_CONFIG at another file`);
  }
  const { isMap, parseDocument } = yaml();
  const doc = parseDocument(text, { prettyErrors: false });
  if (doc.errors.length > 0) {
    const error = doc.errors[0]!;
    const where = error.linePos?.[0] ? `:${error.linePos[0].line}:${error.linePos[0].col}` : '';
    throw new CascadeError('config-invalid', `${path}${where}: ${error.message.split('\n')[0]}; fix the file or recreate it with \`cascade context add\``);
  }
  if (doc.contents === null) return { contexts: {} };
  if (!isMap(doc.contents)) throw new CascadeError('config-invalid', `${path}: expected a mapping with current-context and contexts; fix the file or recreate it with \`cascade context add\``);
  const raw = doc.toJS() as Record<string, unknown>;
  const contexts: Record<string, CascadeContext> = {};
  const rawContexts = raw['contexts'] ?? {};
  if (typeof rawContexts !== 'object' || rawContexts === null || Array.isArray(rawContexts)) {
    throw new CascadeError('config-invalid', `${path}: contexts must be a mapping of name to settings`);
  }
  for (const [name, value] of Object.entries(rawContexts as Record<string, unknown>)) {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new CascadeError('config-invalid', `${path}: context "${name}" must be a mapping`);
    const context: CascadeContext = {};
    for (const [key, field] of Object.entries(value as Record<string, unknown>)) {
      if (!(CONTEXT_FIELDS as readonly string[]).includes(key)) {
        throw new CascadeError('config-invalid', `${path}: context "${name}" has an unknown field "${key}"; known: ${CONTEXT_FIELDS.join(', ')}`);
      }
      if (typeof field !== 'string') throw new CascadeError('config-invalid', `${path}: context "${name}": ${key} must be a string`);
      context[key as ContextField] = field;
    }
    contexts[name] = context;
  }
  const current = raw['current-context'];
  if (current !== undefined && current !== null && typeof current !== 'string') throw new CascadeError('config-invalid', `${path}: current-context must be a context name`);
  return { ...(typeof current === 'string' ? { 'current-context': current } : {}), contexts };
}

/** Writes the config atomically, readable only by its owner (it names token files). */
export function writeConfig(config: CascadeConfig, path = configPath()): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const temp = `${path}.${process.pid}.tmp`;
  writeFileSync(temp, yaml().stringify(config), { mode: 0o600 });
  chmodSync(temp, 0o600);
  renameSync(temp, path);
}

export interface ResolvedContext {
  name: string;
  context: CascadeContext;
  path: string;
}

/**
 * The context to use: the one named (by --context or CASCADE_CONTEXT), else the current one, else
 * none. A named context that does not exist is an error; a missing current one is not.
 */
export function selectContext(named: string | undefined, path = configPath()): ResolvedContext | null {
  const config = readConfig(path);
  const name = named ?? config['current-context'];
  if (name === undefined) return null;
  const context = config.contexts[name];
  if (!context) {
    const known = Object.keys(config.contexts).sort();
    const why = named === undefined ? `current-context is "${name}" but ${path} has no such context` : `no context "${name}" in ${path}`;
    throw new CascadeError('unknown-context', `${why}; known: ${known.join(', ') || 'none'}; add it with \`cascade context add ${name} --region-url URL\``);
  }
  return { name, context, path };
}

/** A token from a context's token file (`~` is the home folder), trailing newline removed. */
export function readTokenFile(file: string, context: ResolvedContext, field: ContextField): string {
  const path = expandHome(file);
  try {
    return readFileSync(path, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    throw new CascadeError(
      'token-file-unreadable',
      `cannot read ${field} ${path} of context "${context.name}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; fix it with \`cascade context add ${context.name} --${field} FILE\``,
    );
  }
}

export function expandHome(file: string): string {
  return file === '~' || file.startsWith('~/') ? join(process.env['HOME'] || homedir(), file.slice(1)) : file;
}
