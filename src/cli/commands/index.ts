import type { Command } from 'commander';
import { registerAgent } from './agent.js';
import { registerInit } from './init.js';
import { registerPlan } from './plan.js';
import { registerDiff } from './diff.js';
import { registerValidate } from './validate.js';
import { registerSimulate } from './simulate.js';
import { registerRegion } from './region.js';
import { registerStatus } from './status.js';
import { registerReconcile } from './reconcile.js';
import { registerHistory } from './history.js';
import { registerRollback } from './rollback.js';
import { registerRollout } from './rollout.js';
import { registerDevices } from './devices.js';
import { registerHub } from './hub.js';
import { registerDemo } from './demo.js';
import { registerContext } from './context.js';
import { registerEvents } from './events.js';

/**
 * Each command lives in its own file and exports `register(program)`.
 * The order here is the order of `cascade --help`.
 */
export function registerCommands(program: Command): void {
  registerInit(program);
  registerValidate(program);
  registerPlan(program);
  registerDiff(program);
  registerRegion(program);
  registerAgent(program);
  registerSimulate(program);
  registerStatus(program);
  registerReconcile(program);
  registerHistory(program);
  registerEvents(program);
  registerRollback(program);
  registerRollout(program);
  registerDevices(program);
  registerHub(program);
  registerContext(program);
  registerDemo(program);
}
