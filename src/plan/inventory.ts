import { CascadeError } from '../core/errors.js';
import type { InventoryDevice } from '../core/types.js';

/**
 * The inventory format of `cascade plan --inventory FILE` and of `GET /api/v1/devices`:
 *   [{"id": "dev-1", "region": "eu-west", "labels": {"site": "berlin"}, "apps": {"web": "2.0.3"}}, ...]
 * Fields beyond these four are allowed and ignored.
 */

/** Reported problems per error; the rest are summarised as "... and N more". */
const MAX_REPORTED = 10;

/** Parses and validates inventory JSON text; `source` (a file or URL) is named in every error. */
export function parseInventory(text: string, source: string): InventoryDevice[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new CascadeError(
      'invalid-inventory',
      `${source}${jsonErrorLocation(text, err)}: not valid JSON (${(err as Error).message}); ` +
        'an inventory is a JSON array of {"id", "region", "labels": {...}, "apps": {"<app>": "<version>"}}',
      { source },
    );
  }
  return validateInventory(value, source);
}

/** Checks the shape of parsed inventory JSON; returns it typed, or throws one error listing what to fix. */
export function validateInventory(value: unknown, source: string): InventoryDevice[] {
  if (isValidInventory(value)) return value;
  return checkInventory(value, source);
}

/**
 * True when `checkInventory` finds no problem, at a fraction of its cost (100,000 devices: a few ms
 * against ~50-80): no message is built for a device that is fine, and ids listed in increasing order
 * (as a region lists them) are known distinct without a set of them. It may say false for an
 * inventory `checkInventory` accepts (a key inherited from a polluted Object.prototype, which
 * `for ... in` sees), never true for one it refuses; on false, `checkInventory` says what is wrong.
 */
function isValidInventory(value: unknown): value is InventoryDevice[] {
  if (!Array.isArray(value)) return false;
  let previousId = '';
  let ids: Set<string> | undefined;
  for (let index = 0; index < value.length; index++) {
    const device: unknown = value[index];
    if (!isPlainObject(device)) return false;
    const id = device.id;
    if (typeof id !== 'string' || id === '') return false;
    if (ids === undefined && id > previousId) previousId = id;
    else {
      if (ids === undefined) {
        ids = new Set();
        for (let i = 0; i < index; i++) ids.add((value[i] as { id: string }).id);
      }
      if (ids.has(id)) return false;
      ids.add(id);
    }
    const region = device.region;
    if (typeof region !== 'string' || region === '') return false;
    if (!isStringMap(device.labels, false) || !isStringMap(device.apps, true)) return false;
  }
  return true;
}

function isStringMap(value: unknown, nonEmpty: boolean): boolean {
  if (!isPlainObject(value)) return false;
  for (const key in value) {
    const entry = value[key];
    if (typeof entry !== 'string' || (nonEmpty && entry === '')) return false;
  }
  return true;
}

/** The full check, naming every problem (up to MAX_REPORTED) with where it is. */
function checkInventory(value: unknown, source: string): InventoryDevice[] {
  if (!Array.isArray(value)) {
    throw new CascadeError(
      'invalid-inventory',
      `${source}: the inventory must be a JSON array of devices, got ${describe(value)}; ` +
        'e.g. [{"id": "dev-1", "region": "eu-west", "labels": {}, "apps": {"web": "2.0.3"}}]',
      { source },
    );
  }
  const problems: string[] = [];
  let more = 0;
  const report = (message: string) => {
    if (problems.length < MAX_REPORTED) problems.push(message);
    else more++;
  };
  const firstIndexById = new Map<string, number>();
  for (let index = 0; index < value.length; index++) {
    const device: unknown = value[index];
    if (!isPlainObject(device)) {
      report(`device at index ${index}: must be an object {"id", "region", "labels", "apps"}, got ${describe(device)}`);
      continue;
    }
    const where = typeof device.id === 'string' && device.id !== '' ? `device at index ${index} (id ${JSON.stringify(device.id)})` : `device at index ${index}`;
    if (typeof device.id !== 'string' || device.id === '') {
      report(`${where}: "id" must be a non-empty string, got ${describe(device.id)}`);
    } else {
      const first = firstIndexById.get(device.id);
      if (first !== undefined) report(`${where}: duplicate id, already used by the device at index ${first}; device ids must be unique`);
      else firstIndexById.set(device.id, index);
    }
    if (typeof device.region !== 'string' || device.region === '') {
      report(`${where}: "region" must be a non-empty string naming the device's region, got ${describe(device.region)}`);
    }
    checkStringMap(device.labels, 'labels', 'label values', '{"site": "berlin-1"}', where, report, false);
    checkStringMap(device.apps, 'apps', 'installed versions', '{"web": "2.0.3"}', where, report, true);
  }
  if (problems.length > 0) {
    const total = problems.length + more;
    const list = problems.map((p) => `  ${source}: ${p}`).join('\n');
    throw new CascadeError(
      'invalid-inventory',
      `${source}: ${total} problem${total === 1 ? '' : 's'} in the inventory, fix ${total === 1 ? 'it' : 'them'} and run again:\n${list}` +
        (more > 0 ? `\n  ... and ${more} more` : ''),
      { source, problems },
    );
  }
  return value as InventoryDevice[];
}

function checkStringMap(
  value: unknown,
  field: string,
  what: string,
  example: string,
  where: string,
  report: (message: string) => void,
  nonEmpty: boolean,
): void {
  if (!isPlainObject(value)) {
    report(`${where}: "${field}" must be an object of ${what}, e.g. ${example} (use {} for none), got ${describe(value)}`);
    return;
  }
  for (const key of Object.keys(value)) {
    const entry = value[key];
    if (typeof entry !== 'string' || (nonEmpty && entry === '')) {
      report(`${where}: "${field}.${key}" must be a ${nonEmpty ? 'non-empty ' : ''}string, got ${describe(entry)}; ${field} holds ${what}, e.g. ${example}`);
    }
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing (the field is missing)';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return value === '' ? 'an empty string' : `the string ${JSON.stringify(value)}`;
  return `${typeof value} ${String(value)}`;
}

/** ":line:col" of the first JSON syntax error (V8's messages do not always give a position). */
function jsonErrorLocation(text: string, err: unknown): string {
  const match = /at position (\d+)/.exec((err as Error)?.message ?? '');
  const position = match ? Number(match[1]) : firstSyntaxErrorOffset(text);
  if (position === null) return '';
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < position && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return `:${line}:${position - lineStart + 1}`;
}

/** Offset of the first character that makes `text` invalid JSON, or null if it scans as valid. */
function firstSyntaxErrorOffset(text: string): number | null {
  let i = 0;
  const skipSpace = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const fail = (): never => {
    throw new SyntaxAt(i);
  };
  const literal = (word: string) => {
    if (text.startsWith(word, i)) i += word.length;
    else fail();
  };
  const string = () => {
    i++; // opening quote
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === 34) {
        i++;
        return;
      }
      if (c < 32) fail();
      if (c === 92) {
        i++;
        if (text[i] === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail();
          i += 5;
        } else if (i < text.length && '"\\/bfnrt'.includes(text[i]!)) i++;
        else fail();
      } else i++;
    }
    fail();
  };
  const number = () => {
    const m = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (!m) fail();
    i += m![0].length;
  };
  const value = (depth: number): void => {
    if (depth > 1000) fail();
    skipSpace();
    const c = text[i];
    if (c === '{') {
      i++;
      skipSpace();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        skipSpace();
        if (text[i] !== '"') fail();
        string();
        skipSpace();
        if (text[i] !== ':') fail();
        i++;
        value(depth + 1);
        skipSpace();
        if (text[i] === ',') i++;
        else if (text[i] === '}') {
          i++;
          return;
        } else fail();
      }
    } else if (c === '[') {
      i++;
      skipSpace();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (;;) {
        value(depth + 1);
        skipSpace();
        if (text[i] === ',') i++;
        else if (text[i] === ']') {
          i++;
          return;
        } else fail();
      }
    } else if (c === '"') string();
    else if (c === 't') literal('true');
    else if (c === 'f') literal('false');
    else if (c === 'n') literal('null');
    else if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) number();
    else fail();
  };
  try {
    value(0);
    skipSpace();
    return i < text.length ? i : null;
  } catch (err) {
    if (err instanceof SyntaxAt) return err.offset;
    return null;
  }
}

class SyntaxAt {
  constructor(readonly offset: number) {}
}
