import type { AppReport, DesiredApp } from '../core/types.js';

const REPORTED_VERSION = /^version (\S{1,253}): /;

/**
 * The version a failed app failed to run, not the one it went back to. The agent says it first in
 * its message (`version 2.0.0: health check failed`), which stays true when the region has handed
 * something newer since; without that, what the region handed it.
 */
export function attemptedVersion(report: AppReport, handed: DesiredApp | undefined): string | null {
  const said = REPORTED_VERSION.exec(report.message ?? '');
  if (said) return said[1]!;
  return handed?.version ?? null;
}
