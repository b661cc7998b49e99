import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * The layers of docs/architecture.md, bottom first. A file may import its own folder and any folder of
 * a lower rank, never a folder of the same or a higher rank; no two files may import each other, even
 * through others. The agent runs on devices and may import only `core`, `protocol` and itself.
 */
const RANKS: Record<string, number> = {
  core: 0,
  protocol: 1,
  source: 2,
  desired: 3,
  plan: 4,
  storage: 5,
  reconciler: 6,
  http: 7,
  agent: 8,
  hub: 8,
  region: 8,
  simulate: 9,
  dashboard: 10,
  demo: 11,
  cli: 12,
};
const AGENT_MAY_IMPORT = new Set(['core', 'protocol', 'agent']);

const SRC = normalize(join(dirname(fileURLToPath(import.meta.url)), '../../src'));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** Relative imports of a file, as paths under src/ ending in .ts (type-only imports count too). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const found: string[] = [];
  for (const match of text.matchAll(/(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g)) {
    found.push(relative(SRC, normalize(join(dirname(file), match[1]!))).replace(/\.js$/, '.ts'));
  }
  return found;
}

const folderOf = (path: string): string => path.split('/')[0]!;

const graph = new Map<string, string[]>(sourceFiles(SRC).map((file) => [relative(SRC, file), importsOf(file)]));

describe('the layers of src/', () => {
  it('gives every folder a rank', () => {
    const unranked = [...new Set([...graph.keys()].map(folderOf))].filter((folder) => !(folder in RANKS) && !folder.endsWith('.ts'));
    expect(unranked).toEqual([]);
  });

  it('imports only downward (and the agent only core and protocol)', () => {
    const upward: string[] = [];
    for (const [file, imports] of graph) {
      const from = folderOf(file);
      for (const target of imports) {
        const to = folderOf(target);
        if (to === from) continue;
        const allowed = from === 'agent' ? AGENT_MAY_IMPORT.has(to) : (RANKS[to] ?? Infinity) < (RANKS[from] ?? -1);
        if (!allowed) upward.push(`${file} -> ${target}`);
      }
    }
    expect(upward).toEqual([]);
  });

  it('has no import cycle between files', () => {
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const stack: string[] = [];
    const visit = (file: string): void => {
      state.set(file, 'open');
      stack.push(file);
      for (const target of graph.get(file) ?? []) {
        if (!graph.has(target)) continue;
        const seen = state.get(target);
        if (seen === 'open') cycles.push([...stack.slice(stack.indexOf(target)), target].join(' -> '));
        else if (seen === undefined) visit(target);
      }
      stack.pop();
      state.set(file, 'done');
    };
    for (const file of graph.keys()) if (!state.has(file)) visit(file);
    expect(cycles).toEqual([]);
  });

  it('finds the imports it checks (a test that cannot fail is no test)', () => {
    expect(graph.get('region/compose.ts')?.some((target) => target.startsWith('reconciler/'))).toBe(true);
  });
});
