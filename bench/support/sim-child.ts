// A simulator process of the scale benchmark: `node --import tsx bench/support/sim-child.ts <json options>`.
// Runs startSimulation and writes its stats as one JSON line to stdout every 500 ms; stops on SIGTERM.
import { pino } from 'pino';
import { startSimulation } from '../../src/simulate/simulation.js';

const opts = JSON.parse(process.argv[2]!) as {
  regionUrl: string;
  devices: number;
  prefix: string;
  enrollmentToken: string;
  mqttUrl?: string;
  initial?: Record<string, string>;
  applyMs?: number;
  enrollConcurrency?: number;
  waitSeconds?: number;
};
const simulation = await startSimulation({
  regionUrl: opts.regionUrl,
  devices: opts.devices,
  enrollmentToken: opts.enrollmentToken,
  prefix: opts.prefix,
  applyMs: opts.applyMs ?? 200,
  initial: opts.initial ?? {},
  statsIntervalMs: 0,
  enrollConcurrency: opts.enrollConcurrency ?? 100,
  ...(opts.waitSeconds ? { waitSeconds: opts.waitSeconds } : {}),
  log: pino({ level: 'warn' }, pino.destination(2)),
  mqtt: opts.mqttUrl ? { url: opts.mqttUrl } : undefined,
});
const timer = setInterval(() => process.stdout.write(`${JSON.stringify(simulation.stats())}\n`), 500);
process.once('SIGTERM', () => {
  clearInterval(timer);
  void simulation.stop().then(() => process.exit(0));
});
