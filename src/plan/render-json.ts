import type { Plan, PlanAction, PlanConflict, PlanStep } from './types.js';

/** The machine-readable plan of `cascade plan --json`; field order is part of the format. */
export interface PlanJson {
  revision: string | null;
  steps: PlanStepJson[];
  conflicts: PlanConflictJson[];
}

export interface PlanStepJson {
  device: string;
  app: string;
  from: string | null;
  to: string | null;
  action: PlanAction;
  deployment: string | null;
  wave: number | null;
  region: string;
  reason: string;
}

export interface PlanConflictJson {
  device: string;
  app: string;
  deployments: string[];
  priority: number;
  message: string;
}

export function planToJson(plan: Plan): PlanJson {
  return {
    revision: plan.revision,
    steps: plan.steps.map(stepJson),
    conflicts: plan.conflicts.map(conflictJson),
  };
}

/** JSON text with one step (and one conflict) per line, so that large plans stay readable and diffable. */
export function renderPlanJson(plan: Plan): string {
  let out = '';
  for (const chunk of planJsonChunks(plan)) out += chunk;
  return out;
}

/**
 * Characters per piece of {@link planJsonChunks}: about 130 steps. Pieces of 256 K characters took twice
 * as long to write (100,000 devices: ~300 against ~150 ms of CPU, text made and written), the
 * flattening and encoding of a large string costing more than the more numerous writes of small ones.
 */
const CHUNK_CHARS = 1 << 15;

/**
 * `renderPlanJson`'s text in pieces of about `chunkChars` characters, made as they are read, so that
 * `cascade plan --json` writes a plan of 100,000 devices (26 MB) without holding it whole or building
 * an object per step. Each step's line is written out field by field, byte for byte what
 * `JSON.stringify(planToJson(plan).steps[i])` gives; a step with a field of an unexpected type (not
 * made by `buildPlan`) goes through `JSON.stringify` itself.
 */
export function* planJsonChunks(plan: Plan, chunkChars = CHUNK_CHARS): Generator<string, void, undefined> {
  // The same few strings (apps, versions, Deployments, regions, reasons) recur on most steps: quote each once.
  const quoted = new Map<string, string>();
  const quote = (value: string): string => {
    let json = quoted.get(value);
    if (json === undefined) {
      json = JSON.stringify(value);
      quoted.set(value, json);
    }
    return json;
  };
  let out = `{\n  "revision": ${JSON.stringify(plan.revision)},\n  "steps": `;
  const steps = plan.steps;
  if (steps.length === 0) out += '[]';
  else {
    out += '[';
    for (let i = 0; i < steps.length; i++) {
      out += (i === 0 ? '\n    ' : ',\n    ') + stepLine(steps[i]!, quote);
      if (out.length >= chunkChars) {
        yield out;
        out = '';
      }
    }
    out += '\n  ]';
  }
  out += ',\n  "conflicts": ';
  const conflicts = plan.conflicts;
  out += conflicts.length === 0 ? '[]' : `[\n${conflicts.map((c) => `    ${JSON.stringify(conflictJson(c))}`).join(',\n')}\n  ]`;
  yield `${out}\n}\n`;
}

function stepLine(s: PlanStep, quote: (value: string) => string): string {
  const { device, app, from, to, action, deployment, wave, region, reason } = s;
  if (
    typeof device === 'string' &&
    typeof app === 'string' &&
    (from === null || typeof from === 'string') &&
    (to === null || typeof to === 'string') &&
    typeof action === 'string' &&
    (deployment === null || typeof deployment === 'string') &&
    (wave === null || Number.isInteger(wave)) &&
    typeof region === 'string' &&
    typeof reason === 'string'
  ) {
    return (
      `{"device":${JSON.stringify(device)},"app":${quote(app)},"from":${from === null ? 'null' : quote(from)},"to":${to === null ? 'null' : quote(to)}` +
      `,"action":${quote(action)},"deployment":${deployment === null ? 'null' : quote(deployment)},"wave":${wave === null ? 'null' : JSON.stringify(wave)}` +
      `,"region":${quote(region)},"reason":${quote(reason)}}`
    );
  }
  return JSON.stringify(stepJson(s));
}

function stepJson(s: PlanStep): PlanStepJson {
  return {
    device: s.device,
    app: s.app,
    from: s.from,
    to: s.to,
    action: s.action,
    deployment: s.deployment,
    wave: s.wave,
    region: s.region,
    reason: s.reason,
  };
}

function conflictJson(c: PlanConflict): PlanConflictJson {
  return { device: c.device, app: c.app, deployments: [...c.deployments], priority: c.priority, message: c.message };
}
