import { writeFileSync, mkdirSync } from 'node:fs';
import type { BenchFigure, BenchSuite } from './types.js';

/**
 * `npm run bench [-- SUITE...]`: runs the benchmark suites (each exports `suite: BenchSuite`),
 * prints a table and writes bench/results/latest.md for the README.
 */
const SUITES: Record<string, () => Promise<{ suite: BenchSuite }>> = {
  load: () => import('./load.bench.js'),
  plan: () => import('./plan.bench.js'),
  fetch: () => import('./fetch.bench.js'),
  region: () => import('./region.bench.js'),
  mqtt: () => import('./mqtt.bench.js'),
  container: () => import('./container.bench.js'),
  scale: () => import('./scale.bench.js'),
  agent: () => import('./agent.bench.js'),
};

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  const names = wanted.length ? wanted : Object.keys(SUITES);
  const rows: string[] = [];
  for (const name of names) {
    const load = SUITES[name];
    if (!load) throw new Error(`unknown benchmark suite "${name}"; known: ${Object.keys(SUITES).join(', ')}`);
    const { suite } = await load();
    process.stderr.write(`running ${suite.name}...\n`);
    const figures = await suite.run();
    for (const f of figures) rows.push(formatRow(suite.name, f));
  }
  const table = [
    '| suite | figure | value | baseline (same run) | ratio | goal | met |',
    '|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
  process.stdout.write(table + '\n');
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(
    new URL('./results/latest.md', import.meta.url),
    `Measured ${new Date().toISOString()} with \`npm run bench${wanted.length ? ' -- ' + wanted.join(' ') : ''}\` (node ${process.version}).\n\n${table}\n`,
  );
}

function formatRow(suite: string, f: BenchFigure): string {
  const fmt = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3));
  const baseline = f.baseline ? `${f.baseline.name}: ${fmt(f.baseline.value)} ${f.baseline.unit}` : '';
  const ratio = f.ratio !== undefined ? `${(f.ratio * 100).toPrecision(3)}%` : '';
  return `| ${suite} | ${f.name} | ${fmt(f.value)} ${f.unit} | ${baseline} | ${ratio} | ${f.goal} | ${f.met ? 'yes' : 'NO'} |`;
}

await main();
