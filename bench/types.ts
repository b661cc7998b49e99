/** One benchmark figure, always beside a baseline measured in the same run (machines here are noisy). */
export interface BenchFigure {
  name: string;
  value: number;
  unit: string;
  baseline?: { name: string; value: number; unit: string };
  /** value / baseline.value */
  ratio?: number;
  /** The goal in words, e.g. "incremental < 5% of cold". */
  goal: string;
  met: boolean;
}

export interface BenchSuite {
  name: string;
  run(): Promise<BenchFigure[]>;
}

export function figure(
  name: string,
  value: number,
  unit: string,
  goal: string,
  met: boolean,
  baseline?: { name: string; value: number; unit: string },
): BenchFigure {
  return { name, value, unit, goal, met, baseline, ratio: baseline ? value / baseline.value : undefined };
}
