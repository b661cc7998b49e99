import { InvalidArgumentError, Option, type Command } from 'commander';
import { CascadeError } from '../../core/errors.js';
import { MAX_WAIT_SECONDS } from '../../protocol/types.js';
import { parseLabelList } from '../../protocol/validate.js';
import { allowArtifactOriginOption, artifactPolicyFrom, urlFlag } from '../parse-flags.js';
import { secretFrom } from '../secrets.js';

interface SimulateFlags {
  regionUrl: string;
  devices: number;
  enrollmentToken?: string;
  labels?: string;
  prefix: string;
  applyMs: number;
  failRate: number;
  failVersion?: string;
  offlineRate: number;
  initial?: string;
  seed: string;
  wait: number;
  mqttUrl?: string;
  mqttCaFile?: string;
  allowArtifactOrigin?: string[];
  pullMs?: number;
  startMs?: number;
  healthMs?: number;
}

function countFlag(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 100_000) throw new InvalidArgumentError(`"${value}" must be a whole number from 1 to 100000.`);
  return n;
}

function millisFlag(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`"${value}" is not a whole number of milliseconds.`);
  return n;
}

function rateFlag(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || n > 1) throw new InvalidArgumentError(`"${value}" must be a fraction from 0 to 1, e.g. 0.05.`);
  return n;
}

function waitFlag(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > MAX_WAIT_SECONDS) throw new InvalidArgumentError(`"${value}" must be a whole number of seconds from 1 to ${MAX_WAIT_SECONDS}.`);
  return n;
}

/** `web=1.0.0,db=5` -> { web: '1.0.0', db: '5' } */
function parseInitial(text: string | undefined): Record<string, string> {
  const initial: Record<string, string> = {};
  for (const item of (text ?? '').split(',').map((part) => part.trim()).filter(Boolean)) {
    const eq = item.indexOf('=');
    if (eq <= 0 || eq === item.length - 1) {
      throw new CascadeError('invalid-initial', `--initial: '${item}' is not app=version (expected e.g. --initial web=1.0.0,db=5)`);
    }
    initial[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return initial;
}

export function registerSimulate(program: Command): void {
  program
    .command('simulate')
    .description('run many simulated device agents in one process against a region (real protocol, real HTTP)')
    .addOption(new Option('--region-url <url>', 'URL of the region').env('CASCADE_REGION_URL').argParser(urlFlag).makeOptionMandatory())
    .addOption(new Option('--devices <n>', 'number of devices').default(100).argParser(countFlag))
    .addOption(new Option('--enrollment-token <token>', 'the region\'s enrolment secret').env('CASCADE_ENROLLMENT_TOKEN'))
    .addOption(new Option('--labels <k=v,...>', 'labels of every device').env('CASCADE_LABELS'))
    .addOption(new Option('--prefix <prefix>', 'device ids are <prefix>-0001, <prefix>-0002, ...').default('sim'))
    .addOption(new Option('--apply-ms <ms>', 'typical install time (each is 0.5x-1.5x of it)').default(1000).argParser(millisFlag))
    .addOption(new Option('--pull-ms <ms>', 'container apps: typical image pull time (default: 60% of --apply-ms; skipped when the image is on the device)').argParser(millisFlag))
    .addOption(new Option('--start-ms <ms>', 'container apps: typical container start time (default: 15% of --apply-ms)').argParser(millisFlag))
    .addOption(new Option('--health-ms <ms>', 'container apps: typical time to pass the health check (default: 25% of --apply-ms)').argParser(millisFlag))
    .addOption(new Option('--fail-rate <r>', 'fraction of updates that fail, per device and version').default(0).argParser(rateFlag))
    .addOption(new Option('--fail-version <version>', 'every update to this version fails'))
    .addOption(new Option('--offline-rate <r>', 'fraction of devices that report once, then go silent').default(0).argParser(rateFlag))
    .addOption(new Option('--initial <app=version,...>', 'apps installed on every device at start'))
    .addOption(new Option('--seed <seed>', 'makes failures and offline devices reproducible').default('1'))
    .addOption(new Option('--wait <seconds>', 'long-poll wait of each device').default(30).argParser(waitFlag))
    .addOption(new Option('--mqtt-url <url>', 'after enrolling over HTTP, each device reports and takes desired state over MQTT').env('CASCADE_MQTT_URL'))
    .addOption(new Option('--mqtt-ca-file <file>', 'with mqtts://: PEM file of the CA that signed the broker\'s certificate').env('CASCADE_MQTT_CA_FILE'))
    .addOption(allowArtifactOriginOption())
    .action(async (flags: SimulateFlags) => {
      const [{ startSimulation }, { createCliLogger }] = await Promise.all([import('../../simulate/simulation.js'), import('../logger.js')]);
      const labels = parseLabelList(flags.labels, '--labels');
      const initial = parseInitial(flags.initial);
      if (flags.mqttCaFile && !flags.mqttUrl) throw new CascadeError('mqtt-ca-file-without-url', '--mqtt-ca-file needs --mqtt-url');
      const log = createCliLogger();
      let fatal: { deviceId: string; err: Error } | null = null;
      let finish: () => void = () => {};
      const finished = new Promise<void>((resolve) => (finish = resolve));
      const simulation = await startSimulation({
        regionUrl: flags.regionUrl,
        devices: flags.devices,
        enrollmentToken: secretFrom(flags.enrollmentToken, 'CASCADE_ENROLLMENT_TOKEN') ?? null,
        labels,
        prefix: flags.prefix,
        applyMs: flags.applyMs,
        // Container apps go through pull, start and health check, as the container runtime does.
        container: {
          pullMs: flags.pullMs ?? Math.round(flags.applyMs * 0.6),
          startMs: flags.startMs ?? Math.round(flags.applyMs * 0.15),
          healthMs: flags.healthMs ?? Math.round(flags.applyMs * 0.25),
        },
        failRate: flags.failRate,
        failVersion: flags.failVersion ?? null,
        offlineRate: flags.offlineRate,
        initial,
        seed: flags.seed,
        waitSeconds: flags.wait,
        mqtt: flags.mqttUrl ? { url: flags.mqttUrl, caFile: flags.mqttCaFile } : undefined,
        artifactPolicy: { allowOrigins: artifactPolicyFrom(flags).allowOrigins },
        log,
        // Errors no retry can fix (wrong enrollment token, say) are the same for every device: stop at the first.
        onFatal: (deviceId, err) => {
          fatal ??= { deviceId, err };
          finish();
        },
      });
      log.info({ devices: flags.devices, regionUrl: flags.regionUrl }, 'simulation started');
      const onSignal = () => finish();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      await finished;
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.stderr.write(`${simulation.statsLine()}\n`);
      await simulation.stop();
      if (fatal) {
        const { deviceId, err } = fatal as { deviceId: string; err: Error };
        throw new CascadeError((err as CascadeError).code ?? 'simulation-failed', `device ${deviceId}: ${err.message}`);
      }
    });
}
