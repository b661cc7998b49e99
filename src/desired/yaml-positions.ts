import { isAlias, isMap, isScalar, isSeq, type Document, type LineCounter, type Node as YamlNode } from 'yaml';

/** Whether a node is addressed by its value or, for an unknown or forbidden field, by its key. */
export type PointAt = 'value' | 'key';

/** Positions of nodes in a parsed file, found from JSON pointers (such as ajv's instancePath). */
export class YamlPositions {
  constructor(
    private readonly docs: Document.Parsed[],
    private readonly lineCounter: LineCounter,
  ) {}

  /** 1-based line and column of the node at `pointer` in document `index`; the nearest existing ancestor when it is missing. */
  locate(index: number, pointer: string, at: PointAt = 'value'): { line: number; col: number } {
    const doc = this.docs[index];
    if (!doc) return { line: 1, col: 1 };
    let node: unknown = doc.contents;
    let offset = doc.contents?.range[0] ?? doc.range[0];
    const segments = pointer === '' ? [] : pointer.slice(1).split('/').map(unescapePointer);
    for (let i = 0; i < segments.length; i++) {
      const segment = segments[i]!;
      const last = i === segments.length - 1;
      if (isAlias(node)) node = node.resolve(doc);
      if (isMap(node)) {
        const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === segment);
        if (!pair) break;
        const key = pair.key as YamlNode;
        if (last && at === 'key' && key.range) return this.position(key.range[0]);
        const value = pair.value as YamlNode | null;
        if (!value?.range) {
          if (key.range) offset = key.range[0];
          break;
        }
        node = value;
        offset = value.range![0];
      } else if (isSeq(node)) {
        const item = node.items[Number(segment)] as YamlNode | undefined;
        if (!item?.range) break;
        node = item;
        offset = item.range[0];
      } else {
        break;
      }
    }
    return this.position(offset);
  }

  private position(offset: number): { line: number; col: number } {
    const { line, col } = this.lineCounter.linePos(offset);
    return { line, col };
  }
}

export function escapePointer(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

export function unescapePointer(segment: string): string {
  return segment.replace(/~1/g, '/').replace(/~0/g, '~');
}
