import { isDeepStrictEqual } from 'node:util';
import YAML, { isMap, isPair, isScalar, type Document, type Pair, type YAMLMap } from 'yaml';
import { CascadeError } from '../../core/errors.js';

/**
 * The text of a fleet file with Deployment `name`'s `spec.rollout.paused` set (`paused: true`) or
 * removed (`paused: false`; an emptied `rollout:` goes too), or null when it already is so. Edits the
 * YAML in place: a block mapping gets one line added or removed and every other byte of the file
 * stays as it was (comments, quoting, flow lists, other documents). Where that is not possible (flow
 * mappings), the one document is re-printed through the `yaml` Document API, which keeps its
 * comments. Either way the result is parsed again and must hold exactly the change.
 */
export function setPaused(text: string, name: string, paused: boolean): string | null {
  const docs = [...YAML.parseAllDocuments(text)] as Document.Parsed[];
  const doc = docs.find((d) => {
    const value = d.toJS({ maxAliasCount: 100 }) as { kind?: unknown; metadata?: { name?: unknown } } | null;
    return value?.kind === 'Deployment' && value.metadata?.name === name;
  });
  if (!doc) throw new CascadeError('rollout-unknown-deployment', `no Deployment named "${name}" in this file`);
  if (doc.errors.length > 0) throw new CascadeError('rollout-invalid-yaml', `the document of Deployment ${name} does not parse: ${doc.errors[0]!.message}; fix it first`);
  const before = doc.toJS() as { spec?: { rollout?: { paused?: unknown } } };
  if ((before.spec?.rollout?.paused === true) === paused) return null;
  const expected = structuredClone(before) as { spec: { rollout?: Record<string, unknown> } };
  if (paused) expected.spec.rollout = { ...(expected.spec.rollout ?? {}), paused: true };
  else {
    delete expected.spec.rollout!['paused'];
    if (Object.keys(expected.spec.rollout!).length === 0) delete expected.spec.rollout;
  }
  const index = docs.indexOf(doc);
  const check = (candidate: string): boolean => {
    const again = [...YAML.parseAllDocuments(candidate)] as Document.Parsed[];
    if (again.length !== docs.length || again.some((d) => d.errors.length > 0)) return false;
    return again.every((d, i) => isDeepStrictEqual(d.toJS(), i === index ? expected : docs[i]!.toJS()));
  };
  const inPlace = lineEdit(text, doc, paused);
  if (inPlace !== null && check(inPlace)) return inPlace;
  // Re-print this document only; the others keep their bytes.
  if (paused) doc.setIn(['spec', 'rollout', 'paused'], true);
  else {
    doc.deleteIn(['spec', 'rollout', 'paused']);
    const rollout = doc.getIn(['spec', 'rollout']);
    if (isMap(rollout) && rollout.items.length === 0) doc.deleteIn(['spec', 'rollout']);
  }
  const [start, , end] = doc.range;
  let printed = doc.toString();
  if (index > 0 || text.slice(start, end).startsWith('---')) printed = printed.replace(/^(?!---)/, '---\n');
  if (index === 0 && !text.slice(start, end).startsWith('---')) printed = printed.replace(/^---\n/, '');
  const whole = text.slice(0, start) + printed + text.slice(end);
  if (!check(whole)) throw new CascadeError('rollout-edit-failed', `could not set spec.rollout.paused in Deployment ${name} without changing anything else; edit the file by hand`);
  return whole;
}

/** The one-line edit of a block mapping, or null when the document is not shaped for it. */
function lineEdit(text: string, doc: Document.Parsed, paused: boolean): string | null {
  const spec = pairOf(doc.contents, 'spec');
  if (!spec || !isBlockMap(spec.value)) return null;
  const rolloutPair = pairOf(spec.value, 'rollout');
  if (paused) {
    if (!rolloutPair) {
      const indent = keyIndent(text, spec.value);
      return insertAfter(text, spec.value, `${indent}rollout:\n${indent}  paused: true\n`);
    }
    if (!isBlockMap(rolloutPair.value)) return null;
    const existing = pairOf(rolloutPair.value, 'paused');
    if (existing) {
      if (!isScalar(existing.value) || !existing.value.range) return null;
      const [from, to] = existing.value.range;
      return text.slice(0, from) + 'true' + text.slice(to);
    }
    return insertAfter(text, rolloutPair.value, `${keyIndent(text, rolloutPair.value)}paused: true\n`);
  }
  if (!rolloutPair || !isBlockMap(rolloutPair.value)) return null;
  const existing = pairOf(rolloutPair.value, 'paused');
  if (!existing) return null;
  // The only key: the `rollout:` line goes with it.
  const target = rolloutPair.value.items.length === 1 ? rolloutPair : existing;
  if (!isScalar(target.key) || !target.key.range) return null;
  const from = lineStart(text, target.key.range[0]);
  const last = target === rolloutPair ? rolloutPair.value.range![1] : (existing.value as { range?: [number, number, number] } | null)?.range?.[2];
  if (last === undefined) return null;
  return text.slice(0, from) + text.slice(lineEnd(text, Math.max(last - 1, from)));
}

function pairOf(node: unknown, key: string): Pair<unknown, unknown> | undefined {
  if (!isMap(node)) return undefined;
  return (node as YAMLMap).items.find((p) => isPair(p) && isScalar(p.key) && p.key.value === key) as Pair<unknown, unknown> | undefined;
}

function isBlockMap(node: unknown): node is YAMLMap & { range: [number, number, number] } {
  return isMap(node) && !node.flow && Array.isArray(node.range) && node.items.length > 0;
}

/** The indentation of a block map's keys (the spaces before its first key). */
function keyIndent(text: string, map: YAMLMap): string {
  const first = map.items[0]!.key as { range?: [number, number, number] };
  const at = first.range![0];
  return ' '.repeat(at - lineStart(text, at));
}

/** Inserts whole lines after the last line of a block map's values (its trailing comments stay below). */
function insertAfter(text: string, map: YAMLMap & { range: [number, number, number] }, lines: string): string {
  const at = lineEnd(text, Math.max(map.range[1] - 1, map.range[0]));
  const before = text.slice(0, at);
  return (before.endsWith('\n') || before === '' ? before : before + '\n') + lines + text.slice(at);
}

function lineStart(text: string, at: number): number {
  return text.lastIndexOf('\n', at - 1) + 1;
}

/** The offset just past the newline of the line holding `at` (the text's end when it has none). */
function lineEnd(text: string, at: number): number {
  const nl = text.indexOf('\n', at);
  return nl < 0 ? text.length : nl + 1;
}
