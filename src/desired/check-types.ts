import type { AnyDoc, DocSource, Kind } from './model.js';
import type { PointAt } from './yaml-positions.js';

/** A document that passed its schema. */
export interface CheckedDoc {
  doc: AnyDoc;
  source: DocSource;
}

/** Any document whose kind and name could be read, valid or not: enough to tell duplicates and to resolve references. */
export interface NamedDoc {
  kind: Kind;
  name: string;
  source: DocSource;
}

/** A problem between documents, located by pointer; the loader looks up line and column. */
export interface CheckProblem {
  code: string;
  path: string;
  index: number;
  pointer: string;
  at: PointAt;
  message: string;
}
