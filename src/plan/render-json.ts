import type { Plan, PlanAction } from './types.js';

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
    steps: plan.steps.map((s) => ({
      device: s.device,
      app: s.app,
      from: s.from,
      to: s.to,
      action: s.action,
      deployment: s.deployment,
      wave: s.wave,
      region: s.region,
      reason: s.reason,
    })),
    conflicts: plan.conflicts.map((c) => ({ device: c.device, app: c.app, deployments: [...c.deployments], priority: c.priority, message: c.message })),
  };
}

/** JSON text with one step (and one conflict) per line, so that large plans stay readable and diffable. */
export function renderPlanJson(plan: Plan): string {
  const json = planToJson(plan);
  const list = (items: unknown[]) => (items.length === 0 ? '[]' : `[\n${items.map((item) => `    ${JSON.stringify(item)}`).join(',\n')}\n  ]`);
  return `{\n  "revision": ${JSON.stringify(json.revision)},\n  "steps": ${list(json.steps)},\n  "conflicts": ${list(json.conflicts)}\n}\n`;
}
