/**
 * Version ordering for upgrade/downgrade decisions.
 *
 * Versions are compared the semver way (numeric components, pre-releases below their release, build
 * metadata ignored for precedence), but leniently: any number of numeric components (`1.4`, `2024.05.1`,
 * `1.2.3.4`), an optional leading `v` (`v2`) and leading zeros are accepted. Strings that are not
 * versions at all (`latest`, a git sha) rank above every version and order among themselves by code
 * units. Ties in precedence (`1.4` vs `1.4.0`, `1.0.0+a` vs `1.0.0+b`, `v2` vs `2`) are broken by
 * code-unit order of the whole string, so the order is total and `compareVersions(a, b) === 0` only
 * when `a === b`: two different strings are never "the same version".
 */

const VERSION_PATTERN = /^[vV]?(\d+(?:\.\d+)*)(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$/;
const NUMERIC = /^\d+$/;

export interface ParsedVersion {
  /** Numeric components without leading zeros, kept as strings so that huge numbers compare exactly. */
  release: string[];
  /** Pre-release identifiers; empty for a release. */
  prerelease: string[];
}

/** Parses a version leniently; null when the string is not a version (then it orders lexically). */
export function parseVersion(version: string): ParsedVersion | null {
  const match = VERSION_PATTERN.exec(version);
  if (!match) return null;
  return {
    release: match[1]!.split('.').map(stripLeadingZeros),
    prerelease: match[2] ? match[2].split('.').map((id) => (NUMERIC.test(id) ? stripLeadingZeros(id) : id)) : [],
  };
}

/** Is `version` something compareVersions orders by version precedence (rather than lexically)? */
export function isComparableVersion(version: string): boolean {
  return parsedOrNull(version) !== null;
}

/**
 * Negative when `a` is older than `b`, positive when newer, 0 only when `a === b`.
 * Deterministic and total, so sorting with it is stable across runs and machines.
 */
export function compareVersions(a: string, b: string): number {
  if (a === b) return 0;
  const pa = parsedOrNull(a);
  const pb = parsedOrNull(b);
  if (pa && pb) {
    const byPrecedence = comparePrecedence(pa, pb);
    if (byPrecedence !== 0) return byPrecedence;
  } else if (pa) {
    return -1;
  } else if (pb) {
    return 1;
  }
  return compareCodeUnits(a, b);
}

/** Semver precedence only: 0 for `1.4` and `1.4.0`, or for versions that differ only in build metadata. */
export function comparePrecedence(a: ParsedVersion, b: ParsedVersion): number {
  const length = Math.max(a.release.length, b.release.length);
  for (let i = 0; i < length; i++) {
    const byNumber = compareNumeric(a.release[i] ?? '0', b.release[i] ?? '0');
    if (byNumber !== 0) return byNumber;
  }
  // A release ranks above any of its pre-releases.
  if (a.prerelease.length === 0 && b.prerelease.length === 0) return 0;
  if (a.prerelease.length === 0) return 1;
  if (b.prerelease.length === 0) return -1;
  const ids = Math.min(a.prerelease.length, b.prerelease.length);
  for (let i = 0; i < ids; i++) {
    const byIdentifier = comparePrereleaseIdentifier(a.prerelease[i]!, b.prerelease[i]!);
    if (byIdentifier !== 0) return byIdentifier;
  }
  return Math.sign(a.prerelease.length - b.prerelease.length);
}

function comparePrereleaseIdentifier(a: string, b: string): number {
  const aNumeric = NUMERIC.test(a);
  const bNumeric = NUMERIC.test(b);
  if (aNumeric && bNumeric) return compareNumeric(a, b);
  if (aNumeric) return -1;
  if (bNumeric) return 1;
  return compareCodeUnits(a, b);
}

/** Compares digit strings without leading zeros, of any length. */
function compareNumeric(a: string, b: string): number {
  if (a.length !== b.length) return a.length < b.length ? -1 : 1;
  return compareCodeUnits(a, b);
}

function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function stripLeadingZeros(digits: string): string {
  const stripped = digits.replace(/^0+/, '');
  return stripped === '' ? '0' : stripped;
}

// Fleets use a handful of distinct version strings, compared for every device: parse each once.
// Bounded so that a stream of unique strings cannot grow memory without limit.
const PARSE_CACHE_LIMIT = 4096;
const parseCache = new Map<string, ParsedVersion | null>();

function parsedOrNull(version: string): ParsedVersion | null {
  let parsed = parseCache.get(version);
  if (parsed === undefined) {
    parsed = parseVersion(version);
    if (parseCache.size >= PARSE_CACHE_LIMIT) parseCache.clear();
    parseCache.set(version, parsed);
  }
  return parsed;
}

/**
 * The grammar every version string must follow, in the fleet repository and on the wire: letters,
 * digits, `.`, `_`, `+` and `-`, 1 to 128 characters, starting with a letter or digit. A version
 * reaches file names and the environment of install commands, so it can never hold a path
 * separator, a space, a quote or a shell character, and never starts with `-` (an option) or `.`.
 */
export const VERSION_GRAMMAR = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;
export const VERSION_GRAMMAR_TEXT = 'letters, digits, ".", "_", "+" and "-", at most 128 characters, starting with a letter or digit';

export function isValidVersion(version: unknown): version is string {
  return typeof version === 'string' && VERSION_GRAMMAR.test(version);
}
