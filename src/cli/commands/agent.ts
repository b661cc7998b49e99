import { existsSync } from 'node:fs';
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { DeviceRuntime } from '../../agent/runtime.js';
import { CascadeError } from '../../core/errors.js';
import { MAX_WAIT_SECONDS } from '../../protocol/types.js';
import { isValidDeviceId, parseLabelList } from '../../protocol/validate.js';
import { allowArtifactOriginOption, artifactPolicyFrom, durationFlag, urlFlag } from '../parse-flags.js';
import { secretFrom } from '../secrets.js';
import { checkStateDir } from '../preflight.js';
import { loadOrCreateDeviceKey } from '../../agent/device-key.js';
import { checkContainerPrefix } from '../../agent/container-prefix.js';

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
  containerEngine: string;
  registryAuth?: string;
  containerPrefix: string;
  driftCheck: number;
  healthInterval: number;
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
    .addOption(new Option('--region-url <url>', 'URL of the region, e.g. http://region.local:8080').env('CASCADE_REGION_URL').argParser(urlFlag).makeOptionMandatory())
    .addOption(new Option('--device-id <id>', 'this device\'s id (letters, digits, ._:-)').env('CASCADE_DEVICE_ID').makeOptionMandatory())
    .addOption(new Option('--labels <k=v,...>', 'labels Deployments select on, e.g. ring=canary,site=berlin').env('CASCADE_LABELS'))
    .addOption(new Option('--state-dir <dir>', 'where the device key (made on first start), token, installed versions and artifacts are kept').env('CASCADE_STATE_DIR').makeOptionMandatory())
    .addOption(new Option('--enrollment-token <token>', 'the region\'s enrolment secret (needed once, to enrol)').env('CASCADE_ENROLLMENT_TOKEN'))
    .addOption(new Option('--runtime <type>', 'how apps are installed: exec (real: each App by its runtime.type, exec or container) or simulated').choices(['exec', 'simulated']).env('CASCADE_RUNTIME').default('exec'))
    .addOption(new Option('--wait <seconds>', 'how long each long poll for desired state may wait').env('CASCADE_WAIT').default(30).argParser(waitFlag))
    .addOption(new Option('--apply-ms <ms>', 'with --runtime simulated: how long an install takes').default(500).argParser(millisFlag))
    .addOption(new Option('--container-engine <engine>', 'container apps run on this engine: podman, docker, a path to either, or auto (podman, then docker)').env('CASCADE_CONTAINER_ENGINE').default('auto'))
    .addOption(new Option('--registry-auth <file>', 'credentials for private registries, in Docker\'s config.json format (kept on the device, never in git)').env('CASCADE_REGISTRY_AUTH'))
    .addOption(new Option('--container-prefix <prefix>', 'containers are named <prefix>-<app>-<version>').env('CASCADE_CONTAINER_PREFIX').default('cascade'))
    .addOption(new Option('--drift-check <duration>', 'how often to check that installed containers still run as installed').env('CASCADE_DRIFT_CHECK').default(30_000, '30s').argParser(durationFlag))
    .addOption(new Option('--health-interval <duration>', 'pause between health check attempts').env('CASCADE_HEALTH_INTERVAL').default(2_000, '2s').argParser(durationFlag))
    .addOption(new Option('--mqtt-url <url>', 'after enrolling over HTTP, report and take desired state over MQTT, e.g. mqtts://broker:8883').env('CASCADE_MQTT_URL'))
    .addOption(new Option('--mqtt-ca-file <file>', 'with mqtts://: PEM file of the CA that signed the broker\'s certificate').env('CASCADE_MQTT_CA_FILE'))
    .addOption(allowArtifactOriginOption())
    .action(async (flags: AgentFlags) => {
      // Loaded on use: an agent pays in memory only for its runtime and transport.
      const [{ runDeviceLoop }, { FileAgentState }, { RegionClient }, { createCliLogger }] = await Promise.all([
        import('../../agent/device-loop.js'),
        import('../../agent/agent-state.js'),
        import('../../agent/http/region-client.js'),
        import('../logger.js'),
      ]);
      if (!isValidDeviceId(flags.deviceId)) {
        throw new CascadeError('device-id-invalid', `--device-id '${flags.deviceId}' is invalid: use 1-128 letters, digits or '._:-', starting with a letter or digit`);
      }
      const labels = parseLabelList(flags.labels, '--labels');
      const { allowOrigins } = artifactPolicyFrom(flags);
      // http: or https: is the fleet's choice, enforced by the region; the agent refuses other schemes and local hosts.
      const artifactPolicy = { allowOrigins };
      checkStateDir(flags.stateDir, '--state-dir', 'CASCADE_STATE_DIR');
      const log = createCliLogger();
      if (flags.registryAuth && !existsSync(flags.registryAuth)) {
        throw new CascadeError('registry-auth-missing', `--registry-auth ${flags.registryAuth}: no such file (a Docker config.json with "auths")`);
      }
      // Artifacts the region relays come from it, with this device's token (never sent to an origin).
      const relay = { regionUrl: flags.regionUrl, token: () => client.token };
      // Each App is run by the runtime its runtime.type names; the container engine is found on first use.
      const runtime: DeviceRuntime =
        flags.runtime === 'simulated'
          ? new (await import('../../agent/runtime-simulated.js')).SimulatedRuntime({ applyMs: flags.applyMs, artifactPolicy })
          : await (async () => {
              const [{ RuntimeByApp }, { ExecRuntime }, { RuntimeOnDemand }] = await Promise.all([
                import('../../agent/runtime-by-app.js'),
                import('../../agent/runtime-exec.js'),
                import('../../agent/runtime-on-demand.js'),
              ]);
              checkContainerPrefix(flags.containerPrefix);
              // The container runtime is loaded when the first container App arrives.
              const container = async (): Promise<DeviceRuntime> =>
                new (await import('../../agent/runtime-container.js')).ContainerAppRuntime({
                  deviceId: flags.deviceId,
                  engine: {
                    command: flags.containerEngine,
                    authFile: flags.registryAuth,
                    onCommand: (args, ms, ok) => log.debug({ engine: args.slice(0, 2), ms: Math.round(ms), ok }, 'engine command'),
                  },
                  namePrefix: flags.containerPrefix,
                  healthIntervalMs: flags.healthInterval,
                });
              return new RuntimeByApp({
                exec: new ExecRuntime({ stateDir: flags.stateDir, healthIntervalMs: flags.healthInterval, artifactPolicy, relay }),
                container: new RuntimeOnDemand(container),
              });
            })();
      const stop = new AbortController();
      const onSignal = (name: string) => {
        log.info({ signal: name }, 'stopping');
        stop.abort();
      };
      process.once('SIGINT', () => onSignal('SIGINT'));
      process.once('SIGTERM', () => onSignal('SIGTERM'));
      const client = new RegionClient({ regionUrl: flags.regionUrl, deviceId: flags.deviceId });
      // The device's MQTT username is its id and its password the device token from enrolment.
      const channel = flags.mqttUrl
        ? new (await import('../../agent/mqtt/device-channel.js')).MqttDeviceChannel({ url: flags.mqttUrl, caFile: flags.mqttCaFile, client, log })
        : undefined;
      if (!channel && flags.mqttCaFile) throw new CascadeError('mqtt-ca-file-without-url', '--mqtt-ca-file needs --mqtt-url');
      const deviceKey = loadOrCreateDeviceKey(flags.stateDir);
      log.info(
        { regionUrl: flags.regionUrl, deviceId: flags.deviceId, runtime: flags.runtime, stateDir: flags.stateDir, mqtt: flags.mqttUrl ?? null, key: deviceKey.key.fingerprint, keyCreated: deviceKey.created },
        `agent starting; device key ${deviceKey.key.fingerprint}`,
      );
      try {
        await runDeviceLoop(
          {
            client,
            channel,
            labels,
            enrollmentToken: secretFrom(flags.enrollmentToken, 'CASCADE_ENROLLMENT_TOKEN') ?? null,
            runtime,
            state: new FileAgentState(flags.stateDir),
            log,
            waitSeconds: flags.wait,
            driftCheckMs: flags.driftCheck,
            key: deviceKey.key,
          },
          stop.signal,
        );
      } finally {
        await channel?.close();
      }
    });
}
