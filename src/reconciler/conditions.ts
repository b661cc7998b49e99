import type { Condition, ConditionType } from '../protocol/region-status.js';

/** The region's conditions, each keeping `since` until its status changes (Flux's lastTransitionTime). */
export class RegionConditions {
  private readonly conditions = new Map<ConditionType, Condition>();

  constructor(now: number) {
    this.set('Ready', 'Unknown', 'Starting', 'no pass has run yet', now);
    this.set('Reconciling', 'True', 'Starting', 'the first pass is under way', now);
    this.set('Stalled', 'False', 'Starting', '', now);
  }

  set(type: ConditionType, status: Condition['status'], reason: string, message: string, now: number): void {
    const old = this.conditions.get(type);
    const since = old && old.status === status ? old.since : now;
    this.conditions.set(type, { type, status, reason, message, since });
  }

  get(type: ConditionType): Condition {
    return this.conditions.get(type)!;
  }

  list(): Condition[] {
    return (['Ready', 'Reconciling', 'Stalled'] as const).map((type) => ({ ...this.conditions.get(type)! }));
  }
}
