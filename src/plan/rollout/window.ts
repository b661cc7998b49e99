import { CronExpressionParser } from 'cron-parser';
import { parseDuration } from '../../core/duration.js';
import type { WindowSpec } from '../../desired/model.js';
import { badRollout } from './settings.js';
import type { WindowStatus } from './types.js';

/**
 * Is the maintenance window open at `now`?
 *
 * The window is read on the wall clock of its time zone, the way a person reads "0 2 * * *, 2h,
 * Europe/Berlin": open from 02:00 to 04:00 local time. The cron schedule is matched against local
 * wall-clock time and `duration` is added on the wall clock, so on DST days the window follows the
 * clock on the wall:
 * - when clocks jump forward over the start (02:00 does not exist on the last Sunday of March in
 *   Berlin), the window opens at the jump (03:00 CEST) and still closes at 04:00 local: one hour;
 *   a window lying wholly inside the skipped hour (02:15 for 30m) does not happen that night;
 * - when clocks fall back (02:00-03:00 happens twice in late October), the window covers every
 *   instant whose local time lies in 02:00-04:00: three hours.
 * (cron-parser's own time zone support skips the start that falls in the gap, which would drop a
 * nightly 02:00 window on one night a year.)
 *
 * Only the last start at or before `now` matters: an earlier start's window, of the same length,
 * ends no later. Malformed settings throw CascadeError `bad-rollout` naming `where`.
 */
export function checkWindow(window: WindowSpec, now: number, where = 'rollout'): WindowStatus {
  const zone = window.timezone ?? 'UTC';
  const fields = window.schedule.trim().split(/\s+/);
  if (fields.length !== 5) {
    throw badRollout(`${where}: rollout.window.schedule "${window.schedule}" must have five fields (minute hour day-of-month month day-of-week)`);
  }
  let durationMs: number;
  try {
    durationMs = parseDuration(window.duration);
  } catch (err) {
    throw badRollout(`${where}: rollout.window.duration: ${(err as Error).message}`);
  }
  const clock = wallClock(zone, where);
  const wallNow = clock.wall(now);
  let lastStart: number;
  let nextStart: number;
  try {
    // The wall-clock timeline has no DST, so UTC is the zone to match the schedule in.
    lastStart = CronExpressionParser.parse(window.schedule, { currentDate: new Date(wallNow + 1), tz: 'UTC' }).prev().getTime();
    nextStart = CronExpressionParser.parse(window.schedule, { currentDate: new Date(wallNow), tz: 'UTC' }).next().getTime();
  } catch (err) {
    throw badRollout(`${where}: rollout.window.schedule "${window.schedule}": ${(err as Error).message}`);
  }
  if (wallNow < lastStart + durationMs) {
    return { open: true, openedAt: clock.instant(lastStart), closesAt: clock.instant(lastStart + durationMs), opensAt: null };
  }
  return { open: false, openedAt: null, closesAt: null, opensAt: clock.instant(nextStart) };
}

interface WallClock {
  /** Local wall-clock time at `instant`, as ms since the epoch of a UTC clock showing the same fields. */
  wall(instant: number): number;
  /** The first instant at or after which the wall clock shows `wall` (the jump, for a time that does not exist). */
  instant(wall: number): number;
}

const clocks = new Map<string, WallClock>();

function wallClock(zone: string, where: string): WallClock {
  let clock = clocks.get(zone);
  if (clock) return clock;
  let format: Intl.DateTimeFormat;
  try {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
  } catch {
    throw badRollout(`${where}: rollout.window.timezone "${zone}" is not an IANA time zone such as Europe/Berlin`);
  }
  const wall = (instant: number): number => {
    const parts: Record<string, number> = {};
    for (const part of format.formatToParts(new Date(instant))) {
      if (part.type !== 'literal') parts[part.type] = Number(part.value);
    }
    const ms = ((instant % 1000) + 1000) % 1000;
    return Date.UTC(parts.year!, parts.month! - 1, parts.day!, parts.hour!, parts.minute!, parts.second!, ms);
  };
  const instant = (target: number): number => {
    // Offsets change at most twice a year; the offset one day either side brackets any DST change.
    const before = target - (wall(target - 86_400_000) - (target - 86_400_000));
    const after = target - (wall(target + 86_400_000) - (target + 86_400_000));
    const candidates = [Math.min(before, after), Math.max(before, after)];
    for (const candidate of candidates) if (wall(candidate) === target) return candidate;
    // In a gap (clocks jumped forward over `target`): the first instant whose wall time passes it.
    let low = candidates[0]!;
    let high = candidates[1]!;
    while (high - low > 1) {
      const mid = Math.floor((low + high) / 2);
      if (wall(mid) >= target) high = mid;
      else low = mid;
    }
    return high;
  };
  clock = { wall, instant };
  clocks.set(zone, clock);
  return clock;
}
