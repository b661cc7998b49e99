import {
  Composer,
  LineCounter,
  isMap,
  isPair,
  isScalar,
  isSeq,
  type Document,
  type Node as YamlNode,
} from 'yaml';
import type { Problem } from './model.js';
import { FORBIDDEN_KEYS, PARSE_LIMITS, tokenizeWithLimits } from './yaml-limits.js';
import { YamlPositions, escapePointer } from './yaml-positions.js';
import { bytePosition, firstInvalidUtf8 } from './utf8.js';

export { PARSE_LIMITS } from './yaml-limits.js';
export { YamlPositions, escapePointer, type PointAt } from './yaml-positions.js';

/** A problem found in one file: a Problem without its path, so results can be shared by files with equal content. */
export type FileProblem = Omit<Problem, 'path'>;

/** One non-empty document of a file, as plain data. */
export interface YamlDocument {
  /** Index among every document of the file, empty ones included. */
  index: number;
  line: number;
  col: number;
  value: unknown;
}

export interface ParsedYaml {
  documents: YamlDocument[];
  /** Problems that made documents unreadable (those documents are left out of `documents`). */
  problems: FileProblem[];
  /** Positions of nodes, while the syntax tree is at hand. */
  positions: YamlPositions | null;
}

const COMPOSE_OPTIONS = {
  version: '1.2',
  schema: 'core',
  strict: true,
  uniqueKeys: true,
  // Keys stay as written: `2.0:` is the key "2.0", not the number 2 (artifact versions rely on it).
  stringKeys: true,
  merge: false,
  prettyErrors: false,
  logLevel: 'error',
} as const;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes and parses a fleet file. Never throws; everything wrong with the input becomes a problem. */
export function parseYamlBytes(bytes: Uint8Array): ParsedYaml {
  if (bytes.byteLength > PARSE_LIMITS.maxFileBytes) {
    return { documents: [], problems: [fileTooLarge(bytes.byteLength)], positions: null };
  }
  const nul = bytes.indexOf(0);
  if (nul >= 0) {
    const { line, col } = bytePosition(bytes, nul);
    return {
      documents: [],
      problems: [wholeFile('binary', line, col, `contains a NUL byte, so it is binary, not YAML; if it is not a fleet document, list it in .cascadeignore`)],
      positions: null,
    };
  }
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    const offset = firstInvalidUtf8(bytes);
    const { line, col } = bytePosition(bytes, offset);
    return {
      documents: [],
      problems: [wholeFile('encoding', line, col, `is not valid UTF-8 (byte ${offset}); save it as UTF-8, or list it in .cascadeignore if it is not a fleet document`)],
      positions: null,
    };
  }
  return parseYamlText(text);
}

export function fileTooLarge(size: number): FileProblem {
  const mib = (size / (1024 * 1024)).toFixed(1);
  return wholeFile(
    'file-too-large',
    1,
    1,
    `file is ${mib} MiB, over the ${PARSE_LIMITS.maxFileBytes / (1024 * 1024)} MiB limit for fleet files; split it into smaller files, or list it in .cascadeignore if it is not a fleet document`,
  );
}

export function parseYamlText(text: string): ParsedYaml {
  const lineCounter = new LineCounter();
  const problems: FileProblem[] = [];
  const tokens = tokenizeWithLimits(text, lineCounter);
  if ('tooDeep' in tokens) {
    const { line, col } = lineCounter.linePos(tokens.tooDeep);
    problems.push(
      wholeFile('too-deep', line, col, `nesting is deeper than ${PARSE_LIMITS.maxDepth} levels; fleet documents never need that much, flatten the structure`),
    );
    return { documents: [], problems, positions: null };
  }
  if ('tooManyDocuments' in tokens) {
    const { line, col } = lineCounter.linePos(tokens.tooManyDocuments);
    problems.push(
      wholeFile('too-many-documents', line, col, `file has more than ${PARSE_LIMITS.maxDocumentsPerFile} documents; split it into several files`),
    );
    return { documents: [], problems, positions: null };
  }
  if ('tooManyNodes' in tokens) {
    const { line, col } = lineCounter.linePos(tokens.tooManyNodes);
    problems.push(wholeFile('too-many-nodes', line, col, `file has more than ${PARSE_LIMITS.maxNodesPerFile} values; split it into several files`));
    return { documents: [], problems, positions: null };
  }

  const composer = new Composer(COMPOSE_OPTIONS);
  const docs: Document.Parsed[] = [...composer.compose(tokens.tokens, false, text.length)];
  const documents: YamlDocument[] = [];
  docs.forEach((doc, index) => {
    const docProblems = documentProblems(doc, index, lineCounter);
    if (docProblems.length > 0) {
      problems.push(...docProblems);
      return;
    }
    if (isEmptyDocument(doc)) return;
    const start = lineCounter.linePos(doc.contents?.range[0] ?? doc.range[0]);
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: PARSE_LIMITS.maxAliasCount });
    } catch (err) {
      const message =
        err instanceof ReferenceError && /alias/i.test(err.message)
          ? `aliases expand to too many nodes (more than ${PARSE_LIMITS.maxAliasCount} references); write the values out instead of nesting aliases`
          : `cannot be read: ${(err as Error).message}`;
      problems.push({ code: 'alias-limit', line: start.line, col: start.col, pointer: '', index, message });
      return;
    }
    if (!isPlainObject(value)) {
      problems.push({
        code: 'not-a-mapping',
        line: start.line,
        col: start.col,
        pointer: '',
        index,
        message: `document is a ${describe(value)}, not a mapping; a fleet document is a mapping with apiVersion, kind, metadata and spec`,
      });
      return;
    }
    documents.push({ index, line: start.line, col: start.col, value });
  });
  return { documents, problems: capProblems(problems), positions: new YamlPositions(docs, lineCounter) };
}

function documentProblems(doc: Document.Parsed, index: number, lineCounter: LineCounter): FileProblem[] {
  const problems: FileProblem[] = [];
  for (const error of [...doc.errors, ...doc.warnings]) {
    const { line, col } = lineCounter.linePos(error.pos[0]);
    const duplicate = error.code === 'DUPLICATE_KEY';
    problems.push({
      code: duplicate ? 'duplicate-key' : 'yaml-syntax',
      line,
      col,
      pointer: '',
      index,
      message: duplicate ? duplicateKeyMessage(doc, error.pos[0]) : firstLine(error.message),
    });
  }
  if (problems.length > 0) return problems;
  // Walk the tree without recursion (its depth is already bounded, but aliases make it a graph).
  const stack: Array<{ node: unknown; pointer: string }> = [{ node: doc.contents, pointer: '' }];
  while (stack.length > 0) {
    const { node, pointer } = stack.pop()!;
    if (isMap(node)) {
      for (const pair of node.items) {
        if (!isPair(pair)) continue;
        const key = isScalar(pair.key) ? String(pair.key.value) : '';
        const childPointer = `${pointer}/${escapePointer(key)}`;
        if (FORBIDDEN_KEYS.has(key)) {
          const keyNode = pair.key as YamlNode;
          const { line, col } = lineCounter.linePos(keyNode.range?.[0] ?? 0);
          problems.push({
            code: 'forbidden-key',
            line,
            col,
            pointer: childPointer,
            index,
            message: `"${key}" is not allowed as a key (it could tamper with JavaScript object prototypes); rename or remove it`,
          });
        }
        stack.push({ node: pair.value, pointer: childPointer });
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => stack.push({ node: item, pointer: `${pointer}/${i}` }));
    }
  }
  return problems;
}

function duplicateKeyMessage(doc: Document.Parsed, offset: number): string {
  const key = findKeyAt(doc, offset);
  return key !== undefined
    ? `key "${key}" appears more than once in the same mapping; keep one`
    : 'a key appears more than once in the same mapping; keep one';
}

function findKeyAt(doc: Document.Parsed, offset: number): string | undefined {
  const stack: unknown[] = [doc.contents];
  while (stack.length > 0) {
    const node = stack.pop();
    if (isMap(node)) {
      for (const pair of node.items) {
        const key = pair.key as YamlNode | null;
        if (isScalar(key) && key.range?.[0] === offset) return String(key.value);
        stack.push(pair.value);
      }
    } else if (isSeq(node)) {
      stack.push(...node.items);
    }
  }
  return undefined;
}

function isEmptyDocument(doc: Document.Parsed): boolean {
  const contents = doc.contents;
  return contents == null || (isScalar(contents) && contents.value == null);
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return 'sequence';
  if (value === null) return 'null';
  return `${typeof value} (${JSON.stringify(value)?.slice(0, 40)})`;
}

function wholeFile(code: string, line: number, col: number, message: string): FileProblem {
  return { code, line, col, pointer: '', index: 0, message };
}

function capProblems(problems: FileProblem[]): FileProblem[] {
  if (problems.length <= PARSE_LIMITS.maxProblemsPerFile) return problems;
  const kept = problems.slice(0, PARSE_LIMITS.maxProblemsPerFile);
  const last = kept[kept.length - 1]!;
  kept.push({ ...last, code: 'too-many-problems', message: `and ${problems.length - kept.length} more problems in this file` });
  return kept;
}

function firstLine(message: string): string {
  return message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
}

