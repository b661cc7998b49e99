import { CST, Lexer, type LineCounter, Parser } from 'yaml';

/** Limits that keep hostile files from exhausting memory, stack or time. */
export const PARSE_LIMITS = {
  /** Bigger files are reported, never parsed. */
  maxFileBytes: 1024 * 1024,
  /** Nesting of collections; checked while parsing, before anything recurses. */
  maxDepth: 64,
  /** yaml's guard against "billion laughs" alias expansion. */
  maxAliasCount: 50,
  /** Nodes (scalars, collections, entries) per file: bounds time and memory; 1 MiB of real fleet YAML has under 100,000. */
  maxNodesPerFile: 200_000,
  /** Each document costs a few KB of syntax tree; a file of `---` lines must not cost gigabytes. */
  maxDocumentsPerFile: 10_000,
  /** More problems in one file are summarised in one last problem. */
  maxProblemsPerFile: 50,
} as const;

/** Keys that could reach Object.prototype through careless code downstream. */
export const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/** Lexemes that each start a node or an entry of the syntax tree. */
const NODE_LEXEMES = new Set<string>(['scalar', 'alias', 'flow-map-start', 'flow-seq-start', 'seq-item-ind', 'explicit-key-ind', 'map-value-ind', 'block-scalar-header']);

/**
 * Runs yaml's lexer and CST parser (both iterative) by hand so the nesting depth can be
 * checked on every token; the composer and toJS recurse, so they only ever see shallow input.
 */
export function tokenizeWithLimits(
  text: string,
  lineCounter: LineCounter,
): { tokens: CST.Token[] } | { tooDeep: number } | { tooManyDocuments: number } | { tooManyNodes: number } {
  const parser = new Parser(lineCounter.addNewLine);
  lineCounter.addNewLine(0);
  const tokens: CST.Token[] = [];
  // One stack entry for the document itself, one per collection or pending node inside it.
  const stackLimit = PARSE_LIMITS.maxDepth + 2;
  let documents = 0;
  /** Keeps a token; true when it is one document too many. */
  const take = (token: CST.Token): boolean => {
    tokens.push(token);
    return token.type === 'document' && ++documents > PARSE_LIMITS.maxDocumentsPerFile;
  };
  let nodes = 0;
  for (const lexeme of new Lexer().lex(text)) {
    const offset = parser.offset;
    if (NODE_LEXEMES.has(CST.tokenType(lexeme) ?? '') && ++nodes > PARSE_LIMITS.maxNodesPerFile) return { tooManyNodes: offset };
    for (const token of parser.next(lexeme)) if (take(token)) return { tooManyDocuments: token.offset };
    if (parser.stack.length > stackLimit) return { tooDeep: offset };
  }
  for (const token of parser.end()) if (take(token)) return { tooManyDocuments: token.offset };
  return { tokens };
}
