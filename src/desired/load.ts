import type { FleetFile, FleetSnapshot } from '../source/snapshot.js';
import type { ArtifactUrlPolicy } from '../core/artifact-url.js';
import { checkFleet, type CheckedDoc, type CheckProblem, type NamedDoc } from './check.js';
import { KINDS, type AnyDoc, type DocSource, type Kind, type LoadedFleet, type Problem } from './model.js';
import type { CachedDocument, ParseCache } from './parse-cache.js';
import {
  PARSE_LIMITS,
  fileTooLarge,
  isPlainObject,
  parseYamlBytes,
  type FileProblem,
  type ParsedYaml,
  type YamlDocument,
  type YamlPositions,
} from './parse-yaml.js';
import { validateDocument } from './schemas.js';

export interface LoadStats {
  /** Files in the snapshot. */
  files: number;
  /** Files whose YAML was parsed by this call. */
  parsed: number;
  /** Files whose results came from memory or the disk cache. */
  cached: number;
}

export interface LoadResult {
  /** Only documents without problems (and whose references resolve to such documents). */
  fleet: LoadedFleet;
  /** Sorted by path, line, column. */
  problems: Problem[];
  /** Things that do not make the revision invalid but that a user should know, e.g. a symlink that was not followed. */
  warnings: Problem[];
  stats: LoadStats;
}

export interface FleetLoaderOptions {
  /** Parsed documents on disk, so a restarted process need not parse unchanged files again. */
  cache?: ParseCache;
  /** Which artifact URLs are accepted beyond the default (https:, public hosts). */
  artifactPolicy?: ArtifactUrlPolicy;
}

/** One document of a file, with what the loader learnt about it. */
interface DocEntry {
  index: number;
  line: number;
  col: number;
  kind?: Kind;
  name?: string;
  /** Present when the document passed its schema: normalized (spec always set) and frozen. */
  doc?: AnyDoc;
}

/** Everything about one blob that does not depend on other files; shared by every path with that content. */
interface FileEntry {
  docs: DocEntry[];
  problems: FileProblem[];
}

const PARALLEL_READS = 16;

/**
 * Loads fleet snapshots into validated fleets. Per-file results are kept by blob id between calls,
 * so loading a snapshot that differs by one file parses and validates only that file.
 */
export class FleetLoader {
  private readonly cache: ParseCache | undefined;
  private readonly artifactPolicy: ArtifactUrlPolicy;
  /** Results of the last load, and of the one before (callers often alternate between two revisions). */
  private memory = new Map<string, FileEntry>();
  private previousMemory = new Map<string, FileEntry>();

  constructor(options: FleetLoaderOptions = {}) {
    this.cache = options.cache;
    this.artifactPolicy = options.artifactPolicy ?? {};
  }

  async load(snapshot: FleetSnapshot): Promise<LoadResult> {
    const stats: LoadStats = { files: snapshot.files.length, parsed: 0, cached: 0 };
    const entries = new Map<string, FileEntry>();
    const toRead: FleetFile[] = [];
    const pendingIds = new Set<string>();

    for (const file of snapshot.files) {
      const known = entries.get(file.id) ?? this.memory.get(file.id) ?? this.previousMemory.get(file.id);
      if (known) {
        entries.set(file.id, known);
        stats.cached++;
      } else if (file.size > PARSE_LIMITS.maxFileBytes) {
        entries.set(file.id, { docs: [], problems: [fileTooLarge(file.size)] });
      } else if (pendingIds.has(file.id)) {
        stats.cached++;
      } else {
        pendingIds.add(file.id);
        toRead.push(file);
      }
    }

    const fromDisk = this.cache && toRead.length > 0 ? this.cache.getMany(toRead.map((f) => f.id)) : new Map<string, CachedDocument[]>();
    const toParse: FleetFile[] = [];
    for (const file of toRead) {
      const documents = fromDisk.get(file.id);
      if (!documents) {
        toParse.push(file);
        continue;
      }
      stats.cached++;
      let entry = entryFromDocuments(documents, [], null);
      if (entry === null) {
        // A cached file that now fails its schema: parse it again to say where.
        stats.parsed++;
        const { parsed } = await parseFile(file);
        entry = entryFromDocuments(parsed.documents, parsed.problems, parsed.positions)!;
      }
      entries.set(file.id, entry);
    }

    const toStore: Array<{ id: string; documents: CachedDocument[] }> = [];
    const failedReads = new Set<string>();
    await forEachLimited(toParse, PARALLEL_READS, async (file) => {
      const { parsed, readable, readFailed } = await parseFile(file);
      if (readable) stats.parsed++;
      if (readFailed) failedReads.add(file.id);
      entries.set(file.id, entryFromDocuments(parsed.documents, parsed.problems, parsed.positions)!);
      if (readable && parsed.problems.length === 0) toStore.push({ id: file.id, documents: parsed.documents });
    });
    this.cache?.putMany(toStore);
    this.previousMemory = this.memory;
    // A failed read may succeed next time (an object still being fetched), so it is not remembered.
    this.memory = failedReads.size === 0 ? entries : new Map([...entries].filter(([id]) => !failedReads.has(id)));

    return assemble(snapshot, entries, stats, this.artifactPolicy);
  }
}

/** Reads and parses one file; read failures and oversize content become problems, never exceptions. */
async function parseFile(file: FleetFile): Promise<{ parsed: ParsedYaml; readable: boolean; readFailed?: boolean }> {
  let bytes: Uint8Array;
  try {
    bytes = await file.read();
  } catch (err) {
    const problem: FileProblem = { code: 'unreadable', line: 1, col: 1, pointer: '', index: 0, message: `cannot be read: ${(err as Error).message}` };
    return { parsed: { documents: [], problems: [problem], positions: null }, readable: false, readFailed: true };
  }
  if (bytes.byteLength > PARSE_LIMITS.maxFileBytes) {
    return { parsed: { documents: [], problems: [fileTooLarge(bytes.byteLength)], positions: null }, readable: false };
  }
  return { parsed: parseYamlBytes(bytes), readable: true };
}

/**
 * Validates each document against its schema. Returns null when a document has schema problems
 * and no positions are at hand (the caller parses the file to get them).
 */
function entryFromDocuments(documents: readonly (YamlDocument | CachedDocument)[], parseProblems: FileProblem[], positions: YamlPositions | null): FileEntry | null {
  const docs: DocEntry[] = [];
  const problems = [...parseProblems];
  for (const { index, line, col, value } of documents) {
    if (!isPlainObject(value)) continue;
    const entry: DocEntry = { index, line, col, ...kindAndName(value) };
    const issues = validateDocument(value);
    if (issues.length === 0) {
      entry.doc = deepFreeze(value['spec'] === undefined ? { ...value, spec: {} } : { ...value }) as unknown as AnyDoc;
    } else {
      if (!positions) return null;
      for (const issue of issues) {
        const at = positions.locate(index, issue.pointer, issue.at);
        problems.push({ code: issue.code, line: at.line, col: at.col, pointer: issue.pointer, index, message: issue.message });
      }
    }
    docs.push(entry);
  }
  return { docs, problems };
}

function kindAndName(value: Record<string, unknown>): { kind?: Kind; name?: string } {
  const kind = value['kind'];
  const metadata = value['metadata'];
  const name = isPlainObject(metadata) ? metadata['name'] : undefined;
  if (value['apiVersion'] !== 'cascade/v1' || typeof kind !== 'string' || !(KINDS as readonly string[]).includes(kind)) return {};
  return typeof name === 'string' ? { kind: kind as Kind, name } : { kind: kind as Kind };
}

async function assemble(snapshot: FleetSnapshot, entries: Map<string, FileEntry>, stats: LoadStats, policy: ArtifactUrlPolicy): Promise<LoadResult> {
  const problems: Problem[] = [];
  const valid: CheckedDoc[] = [];
  const named: NamedDoc[] = [];
  for (const file of snapshot.files) {
    const entry = entries.get(file.id)!;
    for (const p of entry.problems) problems.push({ ...p, path: file.path });
    for (const d of entry.docs) {
      const source: DocSource = { path: file.path, index: d.index, line: d.line, col: d.col };
      if (d.kind && d.name !== undefined) named.push({ kind: d.kind, name: d.name, source });
      if (d.doc) valid.push({ doc: d.doc, source });
    }
  }

  const checkProblems = checkFleet(valid, named, policy);
  problems.push(...(await locateCheckProblems(snapshot, checkProblems, valid)));
  const withProblems = new Set(checkProblems.map((p) => `${p.path}\u0000${p.index}`));
  const fleet = buildFleet(
    snapshot.revision,
    valid.filter((v) => !withProblems.has(`${v.source.path}\u0000${v.source.index}`)),
  );
  problems.sort(compareProblems);
  return { fleet, problems, warnings: skippedWarnings(snapshot), stats };
}

/** Finds line and column of problems between documents by parsing again only the files they are in. */
async function locateCheckProblems(snapshot: FleetSnapshot, checkProblems: CheckProblem[], valid: CheckedDoc[]): Promise<Problem[]> {
  if (checkProblems.length === 0) return [];
  const filesByPath = new Map(snapshot.files.map((f) => [f.path, f]));
  const starts = new Map(valid.map((v) => [`${v.source.path}\u0000${v.source.index}`, v.source]));
  const positionsByPath = new Map<string, YamlPositions | null>();
  const located: Problem[] = [];
  for (const p of checkProblems) {
    if (!positionsByPath.has(p.path)) {
      const file = filesByPath.get(p.path);
      positionsByPath.set(p.path, file ? (await parseFile(file)).parsed.positions : null);
    }
    const positions = positionsByPath.get(p.path);
    const fallback = starts.get(`${p.path}\u0000${p.index}`) ?? { line: 1, col: 1 };
    const at = positions ? positions.locate(p.index, p.pointer, p.at) : fallback;
    located.push({ code: p.code, path: p.path, line: at.line, col: at.col, pointer: p.pointer, index: p.index, message: p.message });
  }
  return located;
}

function buildFleet(revision: string | null, docs: CheckedDoc[]): LoadedFleet {
  const fleet: LoadedFleet = {
    revision,
    apps: new Map(),
    deployments: new Map(),
    regions: new Map(),
    fleet: null,
    sources: new Map(),
  };
  const add = ({ doc, source }: CheckedDoc) => fleet.sources.set(`${doc.kind}/${doc.metadata.name}`, source);
  for (const checked of docs) {
    const { doc } = checked;
    if (doc.kind === 'App') fleet.apps.set(doc.metadata.name, doc);
    else if (doc.kind === 'Region') fleet.regions.set(doc.metadata.name, doc);
    else if (doc.kind === 'Fleet') fleet.fleet = doc;
    else continue;
    add(checked);
  }
  // A Deployment whose App or Region was left out goes too (that document's own problem says why).
  for (const checked of docs) {
    const { doc } = checked;
    if (doc.kind !== 'Deployment') continue;
    if (!fleet.apps.has(doc.spec.app)) continue;
    if (doc.spec.selector?.regions?.some((r) => !fleet.regions.has(r))) continue;
    fleet.deployments.set(doc.metadata.name, doc);
    add(checked);
  }
  return fleet;
}

/** A symlink or submodule in the repository is never followed; say so, naming it, rather than skip it silently. */
function skippedWarnings(snapshot: FleetSnapshot): Problem[] {
  return (snapshot.skipped ?? []).map(({ path, kind }) => ({
    code: kind === 'symlink' ? 'symlink-not-followed' : 'submodule-not-followed',
    path,
    line: 1,
    col: 1,
    pointer: '',
    index: 0,
    message:
      kind === 'symlink'
        ? 'warning: symlink not followed; Cascade reads only regular files and folders committed in the repository (a link could point outside it). Commit the documents themselves, or list the path in .cascadeignore'
        : 'warning: submodule not followed; Cascade reads only files of this repository. Copy the documents in, or list the path in .cascadeignore',
  }));
}

export function compareProblems(a: Problem, b: Problem): number {
  if (a.path !== b.path) return a.path < b.path ? -1 : 1;
  return a.line - b.line || a.col - b.col || (a.message < b.message ? -1 : a.message > b.message ? 1 : 0);
}

/** Cached documents are shared by every load that sees the same blob, so nobody may change them. */
function deepFreeze<T>(value: T): T {
  // Recursion is safe: parsed documents are at most PARSE_LIMITS.maxDepth deep.
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key in value) deepFreeze((value as Record<string, unknown>)[key]);
  }
  return value;
}

async function forEachLimited<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
