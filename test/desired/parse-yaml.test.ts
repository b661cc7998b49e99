import { describe, expect, it } from 'vitest';
import { FleetLoader } from '../../src/desired/load.js';
import { PARSE_LIMITS, parseYamlBytes, parseYamlText } from '../../src/desired/parse-yaml.js';
import { validateDocument } from '../../src/desired/schemas.js';
import { UNKNOWN_SIZE } from '../../src/source/snapshot.js';
import { REGION, memorySnapshot } from './memory-snapshot.js';

const bytes = (text: string) => new TextEncoder().encode(text);
const codes = (text: string) => parseYamlText(text).problems.map((p) => p.code);

describe('parseYamlText', () => {
  it('reads multi-document files and skips empty documents, keeping indexes and start positions', () => {
    const parsed = parseYamlText('# comment only\n---\na: 1\n---\n---\n# note\nb: 2\n');
    expect(parsed.problems).toEqual([]);
    expect(parsed.documents).toEqual([
      // A comment before the first `---` belongs to the first document.
      { index: 0, line: 3, col: 1, value: { a: 1 } },
      { index: 2, line: 7, col: 1, value: { b: 2 } },
    ]);
  });

  it('reports syntax errors with their position', () => {
    const { problems, documents } = parseYamlText('a: 1\nb: [1, 2\nc: 3\n');
    expect(documents).toEqual([]);
    expect(problems[0]).toMatchObject({ code: 'yaml-syntax', index: 0 });
    expect(problems[0]!.line).toBeGreaterThanOrEqual(2);
  });

  it('reports duplicate keys at the second key', () => {
    const { problems } = parseYamlText('a: 1\nb:\n  c: 1\n  c: 2\n');
    expect(problems).toEqual([
      { code: 'duplicate-key', line: 4, col: 3, pointer: '', index: 0, message: 'key "c" appears more than once in the same mapping; keep one' },
    ]);
  });

  it('keeps keys as written, so version keys like 2.0 stay strings', () => {
    expect(parseYamlText('2.0: a\n1.10: b\nyes: c\n').documents[0]!.value).toEqual({ '2.0': 'a', '1.10': 'b', yes: 'c' });
  });

  it('rejects collections as keys', () => {
    expect(codes('? [a, b]\n: 1\n')).toEqual(['yaml-syntax']);
  });

  it('reports unknown tags', () => {
    expect(codes('a: !vault secret\n')).toEqual(['yaml-syntax']);
  });

  it('reports a document that is not a mapping', () => {
    expect(codes('- a\n- b\n')).toEqual(['not-a-mapping']);
    expect(codes('just a string\n')).toEqual(['not-a-mapping']);
  });

  it('caps the problems of one file', () => {
    const text = Array.from({ length: 200 }, (_, i) => `k${i}: [\n`).join('') + '\n';
    const many = Array.from({ length: 200 }, () => 'a: 1').join('\n') + '\n';
    for (const t of [text, many]) {
      const { problems } = parseYamlText(t);
      expect(problems.length).toBeLessThanOrEqual(PARSE_LIMITS.maxProblemsPerFile + 1);
    }
    const { problems } = parseYamlText(many);
    expect(problems.at(-1)).toMatchObject({ code: 'too-many-problems' });
  });

  it('locates a value, or a key for unknown fields, by JSON pointer', () => {
    const parsed = parseYamlText('a: 1\n---\nspec:\n  list:\n    - x\n    - "y/z": 2\n');
    const positions = parsed.positions!;
    expect(positions.locate(1, '/spec/list/1/y~1z')).toEqual({ line: 6, col: 14 });
    expect(positions.locate(1, '/spec/list/1/y~1z', 'key')).toEqual({ line: 6, col: 7 });
    expect(positions.locate(1, '/spec/list/0')).toEqual({ line: 5, col: 7 });
    // A missing node: its nearest ancestor.
    expect(positions.locate(1, '/spec/missing/deeper')).toEqual({ line: 4, col: 3 });
    expect(positions.locate(0, '')).toEqual({ line: 1, col: 1 });
  });
});

describe('hostile input', () => {
  it('stops a billion-laughs alias bomb with a problem', () => {
    const lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
    for (let i = 1; i < 10; i++) {
      const prev = String.fromCharCode(96 + i);
      const name = String.fromCharCode(97 + i);
      lines.push(`${name}: &${name} [${Array(9).fill(`*${prev}`).join(',')}]`);
    }
    const { problems, documents } = parseYamlText(lines.join('\n') + '\n');
    expect(documents).toEqual([]);
    expect(problems).toEqual([expect.objectContaining({ code: 'alias-limit', line: 1, col: 1 })]);
  });

  it('still allows a few aliases', () => {
    const { problems, documents } = parseYamlText('base: &b {x: 1}\none: *b\ntwo: *b\n');
    expect(problems).toEqual([]);
    expect(documents[0]!.value).toEqual({ base: { x: 1 }, one: { x: 1 }, two: { x: 1 } });
  });

  it('never lets __proto__, constructor or prototype keys through, and never pollutes Object.prototype', async () => {
    const text = 'metadata:\n  labels:\n    __proto__:\n      polluted: "yes"\n  constructor: {prototype: {polluted: "yes"}}\n"__proto__": {polluted: "yes"}\n';
    const parsed = parseYamlText(text);
    expect(parsed.documents).toEqual([]);
    const found = parsed.problems.map((p) => `${p.code} ${p.pointer} ${p.line}:${p.col}`).sort();
    expect(found).toEqual([
      'forbidden-key /__proto__ 6:1',
      'forbidden-key /metadata/constructor 5:3',
      'forbidden-key /metadata/constructor/prototype 5:17',
      'forbidden-key /metadata/labels/__proto__ 3:5',
    ]);
    const { problems } = await new FleetLoader().load(memorySnapshot({ 'evil.yaml': text }));
    expect(problems.every((p) => p.code === 'forbidden-key')).toBe(true);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('polluted');
  });

  it('survives 100,000 nested flow collections without blowing the stack', () => {
    for (const text of ['['.repeat(100_000), '{a: '.repeat(100_000), '- '.repeat(100_000) + 'x\n']) {
      const { problems, documents } = parseYamlText(text);
      expect(documents).toEqual([]);
      expect(problems).toEqual([expect.objectContaining({ code: 'too-deep', line: 1 })]);
    }
  });

  it('bounds the documents and values of one file', () => {
    expect(codes('---\n'.repeat(PARSE_LIMITS.maxDocumentsPerFile + 10))).toEqual(['too-many-documents']);
    expect(codes('[' + '1,'.repeat(PARSE_LIMITS.maxNodesPerFile) + ']')).toEqual(['too-many-nodes']);
    expect(codes('[' + '[],'.repeat(PARSE_LIMITS.maxNodesPerFile) + ']')).toEqual(['too-many-nodes']);
  });

  it('rejects deep block nesting made of indentation', () => {
    const text = Array.from({ length: 1200 }, (_, i) => `${' '.repeat(i)}k:`).join('\n') + ' 1\n';
    expect(codes(text)).toEqual(['too-deep']);
  });

  it('accepts nesting up to the limit', () => {
    const depth = PARSE_LIMITS.maxDepth - 1;
    const { problems } = parseYamlText('a: ' + '['.repeat(depth) + ']'.repeat(depth) + '\n');
    expect(problems).toEqual([]);
  });

  it('reports invalid UTF-8 with the position of the bad byte', () => {
    for (const bad of [[0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe2, 0x82]]) {
      const input = new Uint8Array([...bytes('a: 1\nb: x'), ...bad, ...bytes('\n')]);
      const { problems } = parseYamlBytes(input);
      expect(problems).toEqual([expect.objectContaining({ code: 'encoding', line: 2, col: 5 })]);
    }
  });

  it('reports binary content', () => {
    const { problems } = parseYamlBytes(new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00]));
    expect(problems.map((p) => p.code)).toEqual(['binary']);
  });

  it('accepts a UTF-8 byte order mark and non-ASCII text', () => {
    const { problems, documents } = parseYamlBytes(new Uint8Array([0xef, 0xbb, 0xbf, ...bytes('name: Zürich 🚀\n')]));
    expect(problems).toEqual([]);
    expect(documents[0]!.value).toEqual({ name: 'Zürich 🚀' });
  });

  it('refuses files over the size limit without parsing them', async () => {
    const big = 'a: ' + 'x'.repeat(2 * 1024 * 1024) + '\n';
    expect(parseYamlBytes(bytes(big)).problems.map((p) => p.code)).toEqual(['file-too-large']);

    const snapshot = memorySnapshot({ 'big.yaml': big, 'region.yaml': REGION('eu') });
    const result = await new FleetLoader().load(snapshot);
    expect(result.problems).toEqual([expect.objectContaining({ code: 'file-too-large', path: 'big.yaml', line: 1, col: 1 })]);
    expect(result.problems[0]!.message).toContain('2.0 MiB, over the 1 MiB limit');
    expect(snapshot.reads).toEqual(['region.yaml']);
    expect(result.fleet.regions.has('eu')).toBe(true);

    // A git blob's size is only known once read: it is read, then refused before parsing.
    const unknownSize = { ...snapshot, files: snapshot.files.map((f) => ({ ...f, size: UNKNOWN_SIZE })) };
    const again = await new FleetLoader().load(unknownSize);
    expect(again.problems.map((p) => p.code)).toEqual(['file-too-large']);
    expect(again.stats.parsed).toBe(1);
  });

  it('never throws on random input (seeded fuzz over YAML-significant characters)', () => {
    let seed = 42;
    const random = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const alphabet = [...'-:?[]{},#&*!|>\'"%@` \n\t\\'.split(''), 'a', 'b', '0', '1', '---\n', '...\n', '__proto__', 'apiVersion: cascade/v1\n', 'kind: App\n', '  ', '\u00e9', '\ud83d\ude80'];
    for (let i = 0; i < 400; i++) {
      let text = '';
      const length = Math.floor(random() * 200);
      for (let j = 0; j < length; j++) text += alphabet[Math.floor(random() * alphabet.length)];
      const parsed = parseYamlText(text);
      for (const doc of parsed.documents) validateDocument(doc.value as Record<string, unknown>);
      for (const p of parsed.problems) parsed.positions?.locate(p.index, p.pointer);
    }
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });
});
