// Medians of scale runs made one at a time: `node --import tsx bench/support/scale-median.ts out.json a.json b.json ...`
// groups the results (each file the JSON `node --import tsx bench/scale.bench.ts` writes) by size and transport,
// writes to out.json one result per group whose every number is the median of the group's runs (for
// scale-table.ts), and prints each figure's spread (min-max) over the runs.
import { readFileSync, writeFileSync } from 'node:fs';
import type { ScaleResult } from '../scale.bench.js';

const [out, ...files] = process.argv.slice(2);
if (!out || files.length === 0) throw new Error('usage: scale-median.ts out.json run.json...');
const runs = files.flatMap((file) => JSON.parse(readFileSync(file, 'utf8')) as ScaleResult[]);
const groups = new Map<string, ScaleResult[]>();
for (const run of runs) {
  const key = `${run.devices} ${run.transport}`;
  groups.set(key, [...(groups.get(key) ?? []), run]);
}
const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
const medians: ScaleResult[] = [];
for (const [key, group] of groups) {
  const result: Record<string, unknown> = { ...group[0]! };
  const spreads: string[] = [];
  for (const [field, value] of Object.entries(group[0]!)) {
    if (typeof value !== 'number' || field === 'devices' || field === 'sites') continue;
    const values = group.map((run) => (run as unknown as Record<string, number>)[field]!).filter((v) => Number.isFinite(v));
    if (values.length === 0) continue;
    result[field] = median(values);
    if (group.length > 1) spreads.push(`${field} ${Math.min(...values).toPrecision(3)}-${Math.max(...values).toPrecision(3)}`);
  }
  medians.push(result as unknown as ScaleResult);
  console.log(`${key}: ${group.length} run(s)${spreads.length ? `; spread: ${spreads.join(', ')}` : ''}`);
}
writeFileSync(out, `${JSON.stringify(medians, null, 1)}\n`);
