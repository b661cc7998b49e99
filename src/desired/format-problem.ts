import type { Problem } from './model.js';

/** `path:line:col: message`, the form editors and CI logs turn into links. */
export function formatProblem(problem: Problem): string {
  return `${problem.path}:${problem.line}:${problem.col}: ${problem.message}`;
}
