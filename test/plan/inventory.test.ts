import { describe, expect, it } from 'vitest';
import { CascadeError } from '../../src/core/errors.js';
import { parseInventory, validateInventory } from '../../src/plan/inventory.js';

function errorOf(fn: () => unknown): CascadeError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CascadeError);
    return err as CascadeError;
  }
  throw new Error('expected an error');
}

describe('parseInventory', () => {
  it('returns the devices of a valid inventory, extra fields allowed', () => {
    const text = JSON.stringify([
      { id: 'd1', region: 'eu', labels: { hw: 'rpi4' }, apps: { web: '2.0.3' }, lastSeen: '2024-05-01T00:00:00Z' },
      { id: 'd2', region: 'us', labels: {}, apps: {} },
    ]);
    expect(parseInventory(text, 'inv.json')).toEqual(JSON.parse(text));
    expect(parseInventory('[]', 'inv.json')).toEqual([]);
  });

  it('names the file, line and column of a JSON syntax error', () => {
    const err = errorOf(() => parseInventory('[\n  {"id": "d1",\n   "region": }\n]', 'fleet/inv.json'));
    expect(err.code).toBe('invalid-inventory');
    expect(err.message).toMatch(/^fleet\/inv\.json:3:14: not valid JSON/);
    expect(errorOf(() => parseInventory('[{"id": "d1"},\n]', 'a.json')).message).toMatch(/^a\.json:2:1: /);
    expect(errorOf(() => parseInventory('[{"id": "d1\n"}]', 'b.json')).message).toMatch(/^b\.json:1:12: /);
    expect(errorOf(() => parseInventory('[] x', 'c.json')).message).toMatch(/^c\.json:1:4: /);
    expect(err.message).toContain('an inventory is a JSON array');
    expect(errorOf(() => parseInventory('', 'empty.json')).message).toMatch(/^empty\.json:1:1: not valid JSON/);
  });

  it('locates the syntax error of every one of many randomly corrupted inventories', () => {
    const valid = JSON.stringify([{ id: 'd1', region: 'eu', labels: { a: 'x\\"y' }, apps: { web: '1.0.0' }, n: -1.5e3, t: true, f: null }], null, 1);
    let state = 11;
    const rand = (n: number) => {
      state = (state * 1103515245 + 12345) % 2147483648;
      return state % n;
    };
    const alphabet = '{}[]",:\\ \nxtfn0-1.eE+u';
    for (let k = 0; k < 2000; k++) {
      const chars = valid.split('');
      const edits = 1 + rand(2);
      for (let e = 0; e < edits; e++) {
        const at = rand(chars.length + 1);
        const op = rand(3);
        if (op === 0) chars.splice(at, 1);
        else if (op === 1) chars.splice(at, 0, alphabet[rand(alphabet.length)]!);
        else chars[at] = alphabet[rand(alphabet.length)]!;
      }
      const text = chars.join('');
      let parses = true;
      try {
        JSON.parse(text);
      } catch {
        parses = false;
      }
      if (parses) continue;
      const err = errorOf(() => parseInventory(text, 'x.json'));
      expect(err.message, text).toMatch(/^x\.json:\d+:\d+: not valid JSON/);
    }
  });

  it('rejects a document that is not an array', () => {
    const err = errorOf(() => parseInventory('{"devices": []}', 'inv.json'));
    expect(err.message).toContain('inv.json: the inventory must be a JSON array of devices, got an object');
  });

  it('names the index, the id and the field to fix for each bad device', () => {
    const err = errorOf(() =>
      validateInventory(
        [
          { id: 'ok', region: 'eu', labels: {}, apps: {} },
          'not-a-device',
          { id: '', region: 'eu', labels: {}, apps: {} },
          { id: 'd3', labels: [], apps: { web: 2 } },
          { id: 'd4', region: 'eu', labels: { hw: null }, apps: { web: '' } },
          { id: 'ok', region: 'us', labels: {}, apps: {} },
        ],
        'inv.json',
      ),
    );
    expect(err.code).toBe('invalid-inventory');
    const lines = err.message.split('\n');
    expect(lines[0]).toBe('inv.json: 8 problems in the inventory, fix them and run again:');
    expect(lines.slice(1)).toEqual([
      '  inv.json: device at index 1: must be an object {"id", "region", "labels", "apps"}, got the string "not-a-device"',
      '  inv.json: device at index 2: "id" must be a non-empty string, got an empty string',
      '  inv.json: device at index 3 (id "d3"): "region" must be a non-empty string naming the device\'s region, got nothing (the field is missing)',
      '  inv.json: device at index 3 (id "d3"): "labels" must be an object of label values, e.g. {"site": "berlin-1"} (use {} for none), got an array',
      '  inv.json: device at index 3 (id "d3"): "apps.web" must be a non-empty string, got number 2; apps holds installed versions, e.g. {"web": "2.0.3"}',
      '  inv.json: device at index 4 (id "d4"): "labels.hw" must be a string, got null; labels holds label values, e.g. {"site": "berlin-1"}',
      '  inv.json: device at index 4 (id "d4"): "apps.web" must be a non-empty string, got an empty string; apps holds installed versions, e.g. {"web": "2.0.3"}',
      '  inv.json: device at index 5 (id "ok"): duplicate id, already used by the device at index 0; device ids must be unique',
    ]);
  });

  it('lists at most ten problems and counts the rest', () => {
    const devices = Array.from({ length: 25 }, (_, i) => ({ id: `d${i}`, region: 'eu', labels: {} }));
    const err = errorOf(() => validateInventory(devices, 'inv.json'));
    expect(err.message.split('\n')).toHaveLength(12);
    expect(err.message).toContain('25 problems');
    expect(err.message.endsWith('  ... and 15 more')).toBe(true);
  });

  it('finds each single fault alike in an inventory listed in id order and in one that is not', () => {
    // validateInventory first runs a quick check (ids in increasing order known distinct without a set,
    // no message built) and only on failure the full one: it must accept exactly what the full one accepts.
    const good = (i: number) => ({ id: `dev-${String(i).padStart(3, '0')}`, region: 'eu', labels: { hw: 'rpi4' }, apps: { web: '2.0.3' } });
    const faults: Array<[string, (d: Record<string, unknown>) => void]> = [
      ['duplicate id', (d) => (d['id'] = 'dev-000')],
      ['empty id', (d) => (d['id'] = '')],
      ['missing region', (d) => delete d['region']],
      ['label not a string', (d) => (d['labels'] = { hw: 4 })],
      ['labels an array', (d) => (d['labels'] = [])],
      ['empty app version', (d) => (d['apps'] = { web: '' })],
      ['apps null', (d) => (d['apps'] = null)],
    ];
    for (const order of ['sorted', 'reversed'] as const) {
      const clean = Array.from({ length: 50 }, (_, i) => good(i));
      if (order === 'reversed') clean.reverse();
      expect(validateInventory(clean, 'inv.json')).toBe(clean);
      for (const [name, spoil] of faults) {
        const devices: Array<Record<string, unknown>> = Array.from({ length: 50 }, (_, i) => good(i));
        if (order === 'reversed') devices.reverse();
        spoil(devices[37]!);
        const err = errorOf(() => validateInventory(devices, 'inv.json'));
        expect(err.message, `${order}: ${name}`).toMatch(/^inv\.json: 1 problem in the inventory, fix it and run again:\n  inv\.json: device at index (37|49)\b/); // 49: the later of two dev-000
      }
    }
    // Labels may be empty strings (app versions may not); a non-plain device is refused.
    expect(validateInventory([{ id: 'a', region: 'eu', labels: { x: '' }, apps: {} }], 'i')).toHaveLength(1);
    expect(() => validateInventory([[]], 'i')).toThrow(/device at index 0: must be an object/);
  });
});
