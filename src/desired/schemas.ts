import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type Ajv2020Module from 'ajv/dist/2020.js';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { isDuration } from '../core/duration.js';
import { API_VERSION, KINDS, type Kind } from './model.js';
import { escapePointer, isPlainObject, type PointAt } from './parse-yaml.js';

/** A schema violation in one document, located by JSON pointer; positions are looked up later. */
export interface SchemaIssue {
  code: string;
  pointer: string;
  at: PointAt;
  message: string;
}

const SCHEMA_FILES: Record<Kind, string> = {
  App: 'app.schema.json',
  Deployment: 'deployment.schema.json',
  Region: 'region.schema.json',
  Fleet: 'fleet.schema.json',
};
const SHARED_SCHEMA_FILES = ['common.schema.json', 'rollout.schema.json'];
const SCHEMA_DIR = new URL('../../schemas/', import.meta.url);

const knownCronExpressions = new Map<string, boolean>();
/** Five fields: minute hour day-of-month month day-of-week (no seconds, no @aliases). */
export function isCronExpression(text: string): boolean {
  let known = knownCronExpressions.get(text);
  if (known === undefined) {
    const fields = text.trim().split(/\s+/);
    known = fields.length === 5 && !fields.some((f) => f.startsWith('@')) && cronParses(fields.join(' '));
    // Fleets reuse a handful of schedules; remembering them keeps validation of thousands of documents cheap.
    if (knownCronExpressions.size < 1000) knownCronExpressions.set(text, known);
  }
  return known;
}

// cron-parser (with luxon) is required on the first schedule a document holds, not by every load.
const cronParser = (): typeof import('cron-parser') => createRequire(import.meta.url)('cron-parser') as typeof import('cron-parser');

function cronParses(expression: string): boolean {
  try {
    cronParser().CronExpressionParser.parse(expression);
    return true;
  } catch {
    return false;
  }
}

const knownTimeZones = new Map<string, boolean>();
/** An IANA time zone name that this Node's ICU knows, e.g. Europe/Berlin or UTC. */
export function isTimeZone(text: string): boolean {
  let known = knownTimeZones.get(text);
  if (known === undefined) {
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: text });
      known = text.length > 0;
    } catch {
      known = false;
    }
    if (knownTimeZones.size < 1000) knownTimeZones.set(text, known);
  }
  return known;
}

type Validators = Record<Kind, ValidateFunction>;
let validators: Validators | undefined;

const require = createRequire(import.meta.url);
/**
 * The validators as JavaScript, written by `npm run build` next to this file in dist/ (see
 * writePrecompiledValidators): compiling the schemas with ajv costs 100-200 ms at every start of
 * `cascade validate`, `plan` and `diff`; loading the compiled code, ~15 ms, and ajv itself is not loaded.
 */
export const PRECOMPILED_VALIDATORS = 'schema-validators.cjs';

/** The formats the schemas use beyond JSON Schema's, for ajv and for the precompiled validators. */
const FORMATS = {
  duration: { type: 'string' as const, validate: (text: string) => isDuration(text) },
  cron: { type: 'string' as const, validate: isCronExpression },
  timezone: { type: 'string' as const, validate: isTimeZone },
};

function schemaFiles(): string[] {
  return [...SHARED_SCHEMA_FILES, ...KINDS.map((kind) => SCHEMA_FILES[kind])];
}

/** Fingerprint of the schema files: precompiled validators are used only when made from these very files. */
function schemasDigest(): string {
  const hash = createHash('sha256');
  for (const file of schemaFiles()) hash.update(`${file}\0`).update(readFileSync(new URL(file, SCHEMA_DIR))).update('\0');
  return hash.digest('hex');
}

/** ajv with the schemas added; `source` keeps the generated code, for standalone output. */
function schemaAjv(source: boolean): InstanceType<typeof Ajv2020Module.default> {
  // ajv ships CommonJS with `exports.default`; required here, on first use, not at import.
  const Ajv2020 = (require('ajv/dist/2020.js') as typeof Ajv2020Module).default;
  const code = source ? { source: true, formats: (require('ajv') as typeof import('ajv'))._`formats` } : undefined;
  const ajv = new Ajv2020({ strict: true, allErrors: true, verbose: true, allowUnionTypes: true, ...(code ? { code } : {}) });
  ajv.addVocabulary(['x-hint']);
  for (const [name, format] of Object.entries(FORMATS)) ajv.addFormat(name, format);
  for (const file of SHARED_SCHEMA_FILES) ajv.addSchema(readSchema(file));
  return ajv;
}

function compileValidators(): Validators {
  const precompiled = new URL(PRECOMPILED_VALIDATORS, import.meta.url);
  if (existsSync(precompiled)) {
    const made = require(fileURLToPath(precompiled)) as { digest: string; validators: (formats: typeof FORMATS) => Validators };
    if (made.digest === schemasDigest()) return made.validators(FORMATS);
  }
  const ajv = schemaAjv(false);
  const compiled = {} as Validators;
  for (const kind of KINDS) compiled[kind] = ajv.compile(readSchema(SCHEMA_FILES[kind]));
  return compiled;
}

/** The source of the precompiled validators module (for `npm run build`): ajv's standalone code in a function of the formats. */
export function precompiledValidatorsSource(): string {
  const ajv = schemaAjv(true);
  const ids = {} as Record<Kind, string>;
  for (const kind of KINDS) {
    const schema = readSchema(SCHEMA_FILES[kind]);
    ajv.addSchema(schema);
    ids[kind] = String(schema['$id']);
  }
  const standaloneCode = (require('ajv/dist/standalone/index.js') as { default: (ajv: unknown, refs: Record<string, string>) => string }).default;
  const code = standaloneCode(ajv, ids).replace(/^"use strict";/, '');
  return [
    '"use strict";',
    '// Written by `npm run build` (src/desired/schemas.ts): the schemas/ files compiled by ajv. Do not edit.',
    `exports.digest = ${JSON.stringify(schemasDigest())};`,
    'exports.validators = function (formats) {',
    '  const exports = {};',
    code,
    '  return exports;',
    '};',
    '',
  ].join('\n');
}

function readSchema(file: string): Record<string, unknown> {
  return JSON.parse(readFileSync(new URL(file, SCHEMA_DIR), 'utf8')) as Record<string, unknown>;
}

/**
 * Checks one document against the JSON Schema of its kind, after checking apiVersion and kind
 * (they decide which schema applies). Returns every violation, most specific first.
 */
export function validateDocument(value: Record<string, unknown>): SchemaIssue[] {
  const apiVersion = value['apiVersion'];
  const kind = value['kind'];
  const expected = `expected "apiVersion: ${API_VERSION}" and a kind of ${KINDS.join(', ')}`;
  if (apiVersion !== API_VERSION) {
    return [
      {
        code: 'api-version',
        pointer: apiVersion === undefined ? '' : '/apiVersion',
        at: 'value',
        message:
          apiVersion === undefined
            ? `document has no apiVersion; ${expected}${typeof kind === 'string' ? ` (kind here: ${kind})` : ''}`
            : `apiVersion ${JSON.stringify(apiVersion)} is not a Cascade document; ${expected}`,
      },
    ];
  }
  if (typeof kind !== 'string' || !(KINDS as readonly string[]).includes(kind)) {
    return [
      {
        code: 'unknown-kind',
        pointer: kind === undefined ? '' : '/kind',
        at: 'value',
        message:
          kind === undefined
            ? `document has no kind; ${expected}`
            : `kind ${JSON.stringify(kind)} is not a Cascade kind; expected one of ${KINDS.join(', ')}`,
      },
    ];
  }
  validators ??= compileValidators();
  const validate = validators[kind as Kind];
  if (validate(value)) return [];
  return describeErrors(validate.errors ?? []);
}

/** Turns ajv errors into one clear message per problem, dropping the noise of oneOf/if branches. */
function describeErrors(errors: ErrorObject[]): SchemaIssue[] {
  const alternatives = errors.filter((e) => e.keyword === 'oneOf' || e.keyword === 'anyOf').map((e) => e.schemaPath + '/');
  const issues: SchemaIssue[] = [];
  const seen = new Set<string>();
  for (const error of errors) {
    if (error.keyword === 'if') continue;
    // A bad map key yields the key's own errors plus one propertyNames error; the latter says it all.
    if (error.propertyName !== undefined && error.keyword !== 'propertyNames') continue;
    if (alternatives.some((prefix) => error.schemaPath.startsWith(prefix))) continue;
    const issue = describeError(error);
    const key = `${issue.pointer}\u0000${issue.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    issues.push(issue);
  }
  return issues;
}

function describeError(error: ErrorObject): SchemaIssue {
  const pointer = error.instancePath;
  const where = humanPath(pointer);
  const parent = (error.parentSchema ?? {}) as Record<string, unknown>;
  const hint = typeof parent['x-hint'] === 'string' ? parent['x-hint'] : undefined;
  const description = typeof parent['description'] === 'string' ? parent['description'] : undefined;
  const params = error.params as Record<string, unknown>;
  const issue = (message: string, at: PointAt = 'value', at_pointer = pointer): SchemaIssue => ({
    code: 'schema',
    pointer: at_pointer,
    at,
    message,
  });
  switch (error.keyword) {
    case 'additionalProperties': {
      const field = String(params['additionalProperty']);
      const allowed = Object.keys((parent['properties'] as Record<string, unknown> | undefined) ?? {});
      const suggestion = closest(field, allowed);
      return issue(
        `unknown field "${field}" in ${where}` +
          (suggestion ? `; did you mean "${suggestion}"?` : '') +
          (allowed.length ? ` (allowed: ${allowed.join(', ')})` : ''),
        'key',
        `${pointer}/${escapePointer(field)}`,
      );
    }
    case 'required':
      return issue(`${where} is missing the required field "${String(params['missingProperty'])}"`);
    case 'type': {
      const quote = params['type'] === 'string' && (typeof error.data === 'number' || typeof error.data === 'boolean');
      return issue(
        `${where} must be ${article(String(params['type']))}, not ${describeValue(error.data)}` +
          (quote ? `; quote it ("${String(error.data)}") so YAML keeps it as text` : ''),
      );
    }
    case 'const':
      return issue(`${where} must be ${JSON.stringify(params['allowedValue'])}, not ${describeValue(error.data)}`);
    case 'enum':
      return issue(
        `${where} must be one of ${(params['allowedValues'] as unknown[]).map((v) => JSON.stringify(v)).join(', ')}, not ${describeValue(error.data)}`,
      );
    case 'format':
      return issue(formatMessage(String(params['format']), where, error.data));
    case 'pattern':
      return issue(`${where} ${describeValue(error.data)} is malformed${description ? `: ${description}` : ` (expected to match ${String(params['pattern'])})`}`);
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return issue(`${where} must be ${String(params['comparison'])} ${String(params['limit'])}, not ${describeValue(error.data)}`);
    case 'minLength':
      return issue(`${where} must not be empty`);
    case 'maxLength':
      return issue(`${where} is longer than ${String(params['limit'])} characters`);
    case 'maxItems':
      return issue(hint ? `${where}: ${hint}` : `${where} has more than ${String(params['limit'])} items`);
    case 'minItems':
      return issue(`${where} needs at least ${String(params['limit'])} item${params['limit'] === 1 ? '' : 's'}`);
    case 'propertyNames':
      return issue(`key "${String(params['propertyName'])}" in ${where} is malformed${describePropertyNames(parent)}`, 'key', `${pointer}/${escapePointer(String(params['propertyName']))}`);
    case 'not':
      return issue(hint ? `${where}: ${hint}` : `${where} is not allowed here`);
    case 'oneOf':
    case 'anyOf':
      return issue(`${where} must be ${hint ?? 'one of the allowed forms'}, not ${describeValue(error.data)}`);
    default:
      return issue(`${where} ${error.message ?? 'is invalid'}`);
  }
}

function describePropertyNames(parent: Record<string, unknown>): string {
  const names = parent['propertyNames'] as Record<string, unknown> | undefined;
  if (names && String(names['$ref']).endsWith('/labelKey')) {
    return ': label keys are an optional DNS prefix and "/", then letters, digits, "-", "_" or ".", starting and ending with a letter or digit';
  }
  return '';
}

function formatMessage(format: string, where: string, data: unknown): string {
  const value = describeValue(data);
  switch (format) {
    case 'duration':
      return `${where} ${value} is not a duration; write whole numbers with units d, h, m, s or ms, largest first, e.g. 45s, 10m, 1h30m`;
    case 'cron':
      return `${where} ${value} is not a five-field cron expression (minute hour day-of-month month day-of-week), e.g. "0 2 * * *" for 02:00 every day`;
    case 'timezone':
      return `${where} ${value} is not a time zone this system knows; use an IANA name such as "Europe/Berlin", "America/New_York" or "UTC"`;
    default:
      return `${where} ${value} is not a valid ${format}`;
  }
}

/** `/spec/rollout/waves/0` -> `spec.rollout.waves[0]`; the root is "document". */
export function humanPath(pointer: string): string {
  if (pointer === '') return 'document';
  let out = '';
  for (const raw of pointer.slice(1).split('/')) {
    const segment = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (/^\d+$/.test(segment)) out += `[${segment}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(segment)) out += out ? `.${segment}` : segment;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

function describeValue(data: unknown): string {
  if (data === null) return 'null';
  if (Array.isArray(data)) return 'a list';
  if (isPlainObject(data)) return 'a mapping';
  if (typeof data === 'string') return JSON.stringify(data.length > 60 ? `${data.slice(0, 57)}...` : data);
  if (typeof data === 'number' || typeof data === 'boolean') return `${typeof data} ${String(data)}`;
  return typeof data;
}

function article(type: string): string {
  const names: Record<string, string> = {
    object: 'a mapping',
    array: 'a list',
    string: 'a string',
    integer: 'an integer',
    number: 'a number',
    boolean: 'true or false',
  };
  return type
    .split(',')
    .map((t) => names[t] ?? t)
    .join(' or ');
}

/** The allowed word closest to a misspelt one, if it is close enough to be a likely typo. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      bestDistance = d;
      best = candidate;
    }
  }
  return best !== undefined && bestDistance <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined;
}

/** Edit distance counting a swap of neighbours as one edit (optimal string alignment), since typos swap letters. */
function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 3 || a.length > 64 || b.length > 64) return Infinity;
  const rows: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i]);
  for (let j = 1; j <= b.length; j++) rows[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = d;
    }
  }
  return rows[a.length]![b.length]!;
}
