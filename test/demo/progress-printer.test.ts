import { describe, expect, it } from 'vitest';
import { ProgressPrinter } from '../../src/demo/progress-printer.js';

function printer(isTTY: boolean) {
  let written = '';
  let now = 0;
  const p = new ProgressPrinter({ write: (text) => (written += text), isTTY, columns: 40 }, 1000, () => now);
  return { p, output: () => written, advance: (ms: number) => (now += ms) };
}

describe('ProgressPrinter without a terminal', () => {
  it('prints a live line only when it changes, at most once a second unless it is a milestone', () => {
    const { p, output, advance } = printer(false);
    p.live('wave 1/3  0 healthy');
    p.live('wave 1/3  0 healthy');
    advance(200);
    p.live('wave 1/3  1 healthy');
    advance(200);
    p.live('wave 1/3  2 healthy');
    p.live('wave 2/3  2 healthy', { milestone: true });
    advance(1000);
    p.live('wave 2/3  3 healthy');
    p.line('done');
    expect(output()).toBe('wave 1/3  0 healthy\nwave 2/3  2 healthy\nwave 2/3  3 healthy\ndone\n');
  });

  it('prints the last held-back line when settled, and ignores a countdown that only changes the text', () => {
    const { p, output, advance } = printer(false);
    p.live('Baking (next wave in 3s)', { key: 'Baking' });
    advance(1500);
    p.live('Baking (next wave in 2s)', { key: 'Baking' });
    p.live('Complete');
    p.settle();
    p.live('terminal only', { terminalOnly: true });
    expect(output()).toBe('Baking (next wave in 3s)\nComplete\n');
  });
});

describe('ProgressPrinter on a terminal', () => {
  it('redraws the live line in place, keeps it on a milestone and on settle, and fits it to the width', () => {
    const { p, output } = printer(true);
    p.live('wave 1/3');
    p.live('wave 1/3  more');
    p.line('a permanent line');
    p.live('wave 2/3', { milestone: true });
    p.live('x'.repeat(50));
    p.settle();
    expect(output()).toBe(
      '\r\x1b[Kwave 1/3' +
        '\r\x1b[Kwave 1/3  more' +
        '\r\x1b[Ka permanent line\nwave 1/3  more' +
        '\n\r\x1b[Kwave 2/3' +
        `\r\x1b[K${'x'.repeat(38)}…` +
        '\n',
    );
  });
});
