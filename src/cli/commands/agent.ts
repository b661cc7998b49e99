import { InvalidArgumentError, Option, type Command } from 'commander';
import { ExecRuntime } from '../../agent/runtime-exec.js';
import { SimulatedRuntime } from '../../agent/runtime-simulated.js';
import { FileAgentState } from '../../agent/agent-state.js';
import { runDeviceLoop } from '../../agent/device-loop.js';
import type { DeviceRuntime } from '../../agent/runtime.js';
import { CascadeError } from '../../core/errors.js';
import { RegionClient } from '../../agent/http/region-client.js';
import { MqttDeviceChannel } from '../../agent/mqtt/device-channel.js';
import { MAX_WAIT_SECONDS } from '../../protocol/types.js';
import { isValidDeviceId, parseLabelList } from '../../protocol/validate.js';
import { createCliLogger } from '../logger.js';
import { allowArtifactOriginOption, artifactPolicyFrom } from '../parse-flags.js';

interface AgentFlags {
  regionUrl: string;
  deviceId: string;
  labels?: string;
  stateDir: string;
  enrollmentToken?: string;
  runtime: 'exec' | 'simulated';
  wait: number;
  applyMs: number;
  mqttUrl?: string;
  mqttCaFile?: string;
  allowArtifactOrigin?: string[];
}

function waitFlag(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > MAX_WAIT_SECONDS) throw new InvalidArgumentError(`"${value}" must be a whole number of seconds from 1 to ${MAX_WAIT_SECONDS}.`);
  return n;
}

function millisFlag(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`"${value}" is not a whole number of milliseconds.`);
  return n;
}

export function registerAgent(program: Command): void {
  program
    .command('agent')
    .description('run the device agent: enrol, report, fetch desired state, install, health-check, roll back')
    .addOption(new Option('--region-url <url>', 'URL of the region, e.g. http://region.local:8080').env('CASCADE_REGION_URL').makeOptionMandatory())
    .addOption(new Option('--device-id <id>', 'this device\'s id (letters, digits, ._:-)').env('CASCADE_DEVICE_ID').makeOptionMandatory())
    .addOption(new Option('--labels <k=v,...>', 'labels Deployments select on, e.g. ring=canary,site=berlin').env('CASCADE_LABELS'))
    .addOption(new Option('--state-dir <dir>', 'where the device token, installed versions and artifacts are kept').env('CASCADE_STATE_DIR').makeOptionMandatory())
    .addOption(new Option('--enrollment-token <token>', 'the region\'s enrolment secret (needed once, to enrol)').env('CASCADE_ENROLLMENT_TOKEN'))
    .addOption(new Option('--runtime <type>', 'how apps are installed').choices(['exec', 'simulated']).env('CASCADE_RUNTIME').default('exec'))
    .addOption(new Option('--wait <seconds>', 'how long each long poll for desired state may wait').env('CASCADE_WAIT').default(30).argParser(waitFlag))
    .addOption(new Option('--apply-ms <ms>', 'with --runtime simulated: how long an install takes').default(500).argParser(millisFlag))
    .addOption(new Option('--mqtt-url <url>', 'after enrolling over HTTP, report and take desired state over MQTT, e.g. mqtts://broker:8883').env('CASCADE_MQTT_URL'))
    .addOption(new Option('--mqtt-ca-file <file>', 'with mqtts://: PEM file of the CA that signed the broker\'s certificate').env('CASCADE_MQTT_CA_FILE'))
    .addOption(allowArtifactOriginOption())
    .action(async (flags: AgentFlags) => {
      if (!isValidDeviceId(flags.deviceId)) {
        throw new CascadeError('device-id-invalid', `--device-id '${flags.deviceId}' is invalid: use 1-128 letters, digits or '._:-', starting with a letter or digit`);
      }
      const labels = parseLabelList(flags.labels, '--labels');
      const { allowOrigins } = artifactPolicyFrom(flags);
      // http: or https: is the fleet's choice, enforced by the region; the agent refuses other schemes and local hosts.
      const artifactPolicy = { allowOrigins };
      const log = createCliLogger();
      const stop = new AbortController();
      const onSignal = (name: string) => {
        log.info({ signal: name }, 'stopping');
        stop.abort();
      };
      process.once('SIGINT', () => onSignal('SIGINT'));
      process.once('SIGTERM', () => onSignal('SIGTERM'));
      const client = new RegionClient({ regionUrl: flags.regionUrl, deviceId: flags.deviceId });
      // Artifacts the region relays come from it, with this device's token (never sent to an origin).
      const relay = { regionUrl: flags.regionUrl, token: () => client.token };
      const runtime: DeviceRuntime =
        flags.runtime === 'simulated'
          ? new SimulatedRuntime({ applyMs: flags.applyMs, artifactPolicy })
          : new ExecRuntime({ stateDir: flags.stateDir, artifactPolicy, relay });
      // The device's MQTT username is its id and its password the device token from enrolment.
      const channel = flags.mqttUrl ? new MqttDeviceChannel({ url: flags.mqttUrl, caFile: flags.mqttCaFile, client, log }) : undefined;
      if (!channel && flags.mqttCaFile) throw new CascadeError('mqtt-ca-file-without-url', '--mqtt-ca-file needs --mqtt-url');
      log.info({ regionUrl: flags.regionUrl, deviceId: flags.deviceId, runtime: flags.runtime, stateDir: flags.stateDir, mqtt: flags.mqttUrl ?? null }, 'agent starting');
      try {
        await runDeviceLoop(
          {
            client,
            channel,
            labels,
            enrollmentToken: flags.enrollmentToken ?? null,
            runtime,
            state: new FileAgentState(flags.stateDir),
            log,
            waitSeconds: flags.wait,
          },
          stop.signal,
        );
      } finally {
        await channel?.close();
      }
    });
}
