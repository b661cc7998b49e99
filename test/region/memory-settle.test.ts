import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MAX_MINOR_PER_QUIET, MemorySettler, QUIET_TICKS, type HeapReading } from '../../src/region/heap-tuning.js';

const MB = 2 ** 20;

/** A settler over scripted readings: each tick takes the next utilization; collections are recorded. */
function scripted(utilization: number[], heap: HeapReading) {
  const collected: string[] = [];
  const reading = { ...heap };
  const settler = new MemorySettler({
    utilization: () => utilization.shift() ?? 0,
    heap: () => ({ ...reading }),
    collect: (type) => {
      collected.push(type);
      // What V8 does: a full collection frees the garbage; the young generation shrinks after a minor one or two.
      if (type === 'major') reading.usedBytes = 40 * MB;
      if (type === 'minor' && collected.filter((t) => t === 'minor').length >= 2) reading.youngBytes = 2 * MB;
    },
  });
  const tick = (n: number) => {
    for (let i = 0; i < n; i++) settler.tick();
  };
  return { settler, collected, reading, tick };
}

describe('MemorySettler: memory back once the region is quiet', () => {
  it('collects nothing while the event loop is busy, then one full collection and minor ones until the young generation is small', () => {
    const s = scripted([0.5, 0.3, 0.2, ...Array(QUIET_TICKS + 5).fill(0.01)], { youngBytes: 32 * MB, usedBytes: 10 * MB });
    s.reading.usedBytes = 90 * MB; // the rollout's garbage and the fleet
    s.tick(3);
    expect(s.collected).toEqual([]);
    s.tick(QUIET_TICKS - 1); // quiet, not yet for long enough
    expect(s.collected).toEqual([]);
    s.tick(6);
    expect(s.collected).toEqual(['major', 'minor', 'minor']);
    expect(s.settler.collections).toEqual({ minor: 2, major: 1 });
  });

  it('a quiet region whose memory is settled collects nothing more, however long it stays quiet', () => {
    const s = scripted([], { youngBytes: 2 * MB, usedBytes: 40 * MB });
    s.tick(100);
    expect(s.collected).toEqual([]);
  });

  it('gives up on a young generation V8 keeps after a few tries in one quiet spell, and tries again after work', () => {
    const utilization = [...Array(30).fill(0), 0.9, ...Array(30).fill(0)];
    const collected: string[] = [];
    const stubborn = new MemorySettler({ utilization: () => utilization.shift()!, heap: () => ({ youngBytes: 32 * MB, usedBytes: 1 * MB }), collect: (type) => collected.push(type) });
    for (let i = 0; i < 30; i++) stubborn.tick();
    expect(collected).toEqual(Array(MAX_MINOR_PER_QUIET).fill('minor'));
    for (let i = 0; i < 31; i++) stubborn.tick();
    expect(collected).toEqual(Array(2 * MAX_MINOR_PER_QUIET).fill('minor'));
  });

  it('a busy tick ends the spell: the next quiet spell may collect in full again', () => {
    const quiet = Array(QUIET_TICKS).fill(0);
    const s = scripted([...quiet, 0.9, ...quiet], { youngBytes: 2 * MB, usedBytes: 0 });
    s.reading.usedBytes = 60 * MB;
    s.tick(QUIET_TICKS);
    expect(s.collected).toEqual(['major']);
    s.reading.usedBytes = 60 * MB;
    s.tick(1);
    s.tick(QUIET_TICKS);
    expect(s.collected).toEqual(['major', 'major']);
  });
});

describe('MemorySettler on a real V8 (a child process)', () => {
  const run = (mode: 'settle' | 'control') =>
    new Promise<{ grown: number; after: number; collections: { minor: number; major: number } | null }>((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '../support/memory-settle-child.ts'), mode], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
      child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`child exited ${code}: ${err}`))));
    });

  it('gives the grown young generation back; without it V8 keeps it', async () => {
    const [settled, control] = await Promise.all([run('settle'), run('control')]);
    // Both grew well past the 2 x 1 MB they start at.
    expect(settled.grown).toBeGreaterThanOrEqual(16 * MB);
    expect(control.grown).toBeGreaterThanOrEqual(16 * MB);
    expect(control.after).toBe(control.grown);
    expect(settled.after).toBeLessThanOrEqual(4 * MB);
    expect(settled.collections!.minor).toBeGreaterThanOrEqual(1);
  }, 60_000);
});
