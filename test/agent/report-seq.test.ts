import { describe, expect, it } from 'vitest';
import { checkMqttReport } from '../../src/protocol/report-validator.js';
import { MAX_REPORT_SEQ } from '../../src/protocol/types.js';

/** `seq` on the wire: an optional positive integer (the region's HTTP route uses the same JSON Schema). */
describe('report sequence numbers on the wire', () => {
  const report = (seq?: unknown) => ({ deviceId: 'dev-1', apps: {}, ...(seq === undefined ? {} : { seq }) });

  it('accepts a report without seq (older agents) and with a positive integer', () => {
    for (const seq of [undefined, 1, 42, MAX_REPORT_SEQ]) expect(checkMqttReport(report(seq)).ok, String(seq)).toBe(true);
  });

  it('refuses a seq that is not a positive safe integer', () => {
    for (const seq of [0, -1, 1.5, '7', null, MAX_REPORT_SEQ + 2, 1e300]) {
      const check = checkMqttReport(report(seq));
      expect(check.ok, String(seq)).toBe(false);
      if (!check.ok) expect(check.problem, String(seq)).toContain('seq');
    }
  });
});
