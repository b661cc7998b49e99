/**
 * Which artifact URLs a device may be sent to, checked by `cascade validate`, by the region on every
 * revision, and by the agent before it connects (and again for every address DNS gives it).
 *
 * Rules:
 * - `https:` always; `http:` only when allowed (an App or Region setting, a flag, or an allowed origin);
 *   never `file:`, `data:` or any other scheme.
 * - Never a loopback, link-local (cloud metadata 169.254.169.254) or unspecified address, in any
 *   notation the URL parser or the resolver accepts (2130706433, 0x7f.1, 0177.0.0.1, [::1],
 *   [::ffff:127.0.0.1], [fe80::1], 0.0.0.0, localhost and *.localhost), unless an allowed origin names it.
 * - An allowed origin (`--allow-artifact-origin URL-PREFIX`) lifts both rules for URLs under it.
 */
import { BlockList, isIP } from 'node:net';

export interface ArtifactUrlPolicy {
  /** `http:` is accepted everywhere (a region or validate flag, or a setting of the App or Region). */
  allowHttp?: boolean;
  /** URL prefixes (normalized by allowedOrigins) under which any scheme http/https and any host is accepted. */
  allowOrigins?: readonly string[];
}

export const ARTIFACT_URL_REFUSED = 'artifact-url-refused';

/** The environment variable that lists allowed origins, comma-separated. */
export const ALLOW_ORIGIN_ENV = 'CASCADE_ALLOW_ARTIFACT_ORIGIN';

/** Normalizes `--allow-artifact-origin` values (and the env variable's comma-separated list); throws on one that is not an http(s) URL. */
export function parseAllowedOrigins(values: readonly string[] = [], envValue: string | undefined = undefined): string[] {
  const all = [...values, ...(envValue ?? '').split(',')].map((v) => v.trim()).filter(Boolean);
  return all.map((value) => {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      throw new Error(`"${value}" is not a URL prefix; use e.g. http://127.0.0.1:8080/ or https://artifacts.lab.example/`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`"${value}": only http: and https: origins can be allowed`);
    if (url.search || url.hash) throw new Error(`"${value}": an allowed origin is a scheme, host, port and optional path, without ? or #`);
    return url.href;
  });
}

/** Is `url` (already parsed) under one of the allowed prefixes? A prefix ends at a path-segment boundary. */
export function isAllowedOrigin(url: URL, allowOrigins: readonly string[] = []): boolean {
  const href = url.href;
  for (const prefix of allowOrigins) {
    if (!href.startsWith(prefix)) continue;
    if (prefix.endsWith('/')) return true;
    const rest = href.slice(prefix.length);
    if (rest === '' || rest.startsWith('/') || rest.startsWith('?') || rest.startsWith('#')) return true;
  }
  return false;
}

/** Why `text` is not an acceptable artifact URL under `policy`, or null when it is. */
export function artifactUrlProblem(text: string, policy: ArtifactUrlPolicy = {}): string | null {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return `"${clip(text)}" is not an absolute URL; use https://host/path`;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    return `scheme "${url.protocol}" is not allowed for artifacts (only https:, or http: where allowed); a device never reads ${url.protocol} URLs`;
  }
  const allowed = isAllowedOrigin(url, policy.allowOrigins);
  if (allowed) return null;
  if (url.protocol === 'http:' && !policy.allowHttp) {
    return `http: artifacts are not allowed here; use https:, or allow http: (App or Region spec.allowHttpArtifacts, or --allow-artifact-origin ${url.origin}/)`;
  }
  const hostProblem = forbiddenHostProblem(url.hostname);
  if (hostProblem) return `${hostProblem}; allow it only for a lab or a test with --allow-artifact-origin ${url.origin}/`;
  return null;
}

const LOCAL_NAMES = new Set(['localhost', 'localhost.localdomain', 'ip6-localhost', 'ip6-loopback', 'metadata.google.internal', 'metadata', 'instance-data', 'instance-data.ec2.internal']);

/** Why a URL host (as URL.hostname gives it: IPv4 normalized, IPv6 in brackets) is refused, or null. */
export function forbiddenHostProblem(hostname: string): string | null {
  const host = hostname.toLowerCase().replace(/\.+$/, '');
  if (host === '') return 'the URL has no host';
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (isIP(bare)) {
    const kind = forbiddenAddressKind(bare);
    return kind ? `host ${hostname} is not allowed: ${kind} address` : null;
  }
  if (LOCAL_NAMES.has(host) || host.endsWith('.localhost')) return `host ${hostname} names this machine or a cloud metadata service`;
  return null;
}

const IPV4_RULES: Array<[string, number, string]> = [
  ['127.0.0.0', 8, 'loopback'],
  ['169.254.0.0', 16, 'link-local (cloud metadata)'],
  ['0.0.0.0', 8, 'unspecified ("this host")'],
  ['100.100.100.200', 32, 'cloud metadata'],
];
const IPV6_RULES: Array<[string, number, string]> = [
  ['::1', 128, 'loopback'],
  ['::', 128, 'unspecified'],
  ['fe80::', 10, 'link-local'],
  ['fd00:ec2::254', 128, 'cloud metadata'],
];
const rules = (() => {
  const lists = new Map<string, BlockList>();
  for (const [address, prefix, kind] of IPV4_RULES) {
    const list = lists.get(kind) ?? new BlockList();
    list.addSubnet(address, prefix, 'ipv4');
    lists.set(kind, list);
  }
  for (const [address, prefix, kind] of IPV6_RULES) {
    const list = lists.get(kind) ?? new BlockList();
    list.addSubnet(address, prefix, 'ipv6');
    lists.set(kind, list);
  }
  return lists;
})();

/**
 * 'loopback', 'link-local ...' or 'unspecified ...' when a device must not fetch from this IP
 * address; null otherwise. IPv4 embedded in IPv6 (::ffff:a.b.c.d, ::a.b.c.d, 64:ff9b::a.b.c.d,
 * 2002:AABB:CCDD::) is checked as the IPv4 address it carries.
 */
export function forbiddenAddressKind(address: string): string | null {
  const family = isIP(address);
  if (family === 0) return null;
  for (const [kind, list] of rules) if (list.check(address, family === 4 ? 'ipv4' : 'ipv6')) return kind;
  const embedded = family === 6 ? embeddedIpv4(address) : null;
  return embedded ? forbiddenAddressKind(embedded) : null;
}

function embeddedIpv4(address: string): string | null {
  const groups = expandIpv6(address);
  if (!groups) return null;
  const toV4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  const zero = (from: number, to: number) => groups.slice(from, to).every((g) => g === 0);
  // ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible), ::ffff:0:a.b.c.d (translated), 64:ff9b::a.b.c.d (NAT64)
  if (zero(0, 5) && (groups[5] === 0xffff || groups[5] === 0)) return toV4(groups[6]!, groups[7]!);
  if (zero(0, 4) && groups[4] === 0xffff && groups[5] === 0) return toV4(groups[6]!, groups[7]!);
  if (groups[0] === 0x64 && groups[1] === 0xff9b && zero(2, 6)) return toV4(groups[6]!, groups[7]!);
  // 6to4
  if (groups[0] === 0x2002) return toV4(groups[1]!, groups[2]!);
  return null;
}

/** The eight 16-bit groups of an IPv6 address (with a dotted IPv4 tail allowed); null if malformed. */
function expandIpv6(address: string): number[] | null {
  let text = address.split('%')[0]!.toLowerCase();
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  const head = parse(halves[0]!);
  const tail = halves.length === 2 ? parse(halves[1]!) : [];
  const fill = 8 - head.length - tail.length;
  if (halves.length === 1 ? fill !== 0 : fill < 0) return null;
  const groups = [...head, ...new Array<number>(Math.max(0, fill)).fill(0), ...tail];
  return groups.some((g) => Number.isNaN(g)) ? null : groups;
}

function clip(text: string): string {
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
