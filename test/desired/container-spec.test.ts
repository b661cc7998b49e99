import { describe, expect, it } from 'vitest';
import { FleetLoader } from '../../src/desired/load.js';
import { formatProblem } from '../../src/desired/format-problem.js';
import { APP, DEPLOYMENT, REGION, memorySnapshot } from './memory-snapshot.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;
const load = async (files: Record<string, string>) => (await new FleetLoader().load(memorySnapshot(files))).problems;

const containerApp = (runtime: string) =>
  APP(
    'gw',
    `spec:
  runtime:
    type: container
    image: registry.example.com/edge/gw
${runtime}  artifacts:
    "1.0.0": {image: registry.example.com/edge/gw:1.0.0, digest: ${DIGEST}}
`,
  );

describe('the container run spec in cascade validate', () => {
  it('accepts a full run spec', async () => {
    const problems = await load({
      'app.yaml': containerApp(`    command: [/usr/bin/gw, --serve]
    args: ["--port", "8080"]
    env: {LOG_LEVEL: debug, EMPTY: ""}
    ports:
      - {container: 8080, host: 18080, protocol: tcp, hostIp: 127.0.0.1}
    volumes:
      - {name: data, target: /var/lib/gw}
      - {hostPath: /srv/gw, target: /srv, readOnly: true}
    restart: on-failure
    resources: {memory: 256Mi, cpus: 0.5}
    devices:
      - {path: /dev/apex_0, permissions: rw}
    network: host
    stopGracePeriod: 30s
    user: "1000:1000"
`),
    });
    expect(problems).toEqual([]);
  });

  it('locates each malformed field at path:line:col', async () => {
    const problems = await load({
      'app.yaml': containerApp(`    env: {"BAD-NAME": x}
    ports:
      - {container: 70000}
    volumes:
      - {hostPath: /srv/../etc, target: /x}
      - {name: data, hostPath: /srv, target: /y}
      - {name: data, target: "/a:b"}
    resources: {memory: lots}
    devices:
      - {path: /etc/shadow}
    network: "container:other"
    user: "root; rm -rf /"
    priviledged: true
`),
    });
    const lines = problems.map(formatProblem);
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^app\.yaml:9:11: key "BAD-NAME" in spec\.runtime\.env is malformed/),
        expect.stringMatching(/^app\.yaml:11:21: spec\.runtime\.ports\[0\]\.container must be <= 65535/),
        expect.stringMatching(/^app\.yaml:13:20: spec\.runtime\.volumes\[0\]\.hostPath: use an absolute path without '\.' or '\.\.' segments/),
        expect.stringMatching(/^app\.yaml:14:9: spec\.runtime\.volumes\[1\] must be either a named volume \(name\) or a host path \(hostPath\), not both/),
        expect.stringMatching(/^app\.yaml:15:30: spec\.runtime\.volumes\[2\]\.target "\/a:b" is malformed/),
        expect.stringMatching(/^app\.yaml:16:25: spec\.runtime\.resources\.memory "lots" is malformed: bytes with an optional unit/),
        expect.stringMatching(/^app\.yaml:18:16: spec\.runtime\.devices\[0\]\.path "\/etc\/shadow" is malformed: a device under \/dev/),
        expect.stringMatching(/^app\.yaml:19:14: spec\.runtime\.network "container:other" is malformed/),
        expect.stringMatching(/^app\.yaml:20:11: spec\.runtime\.user "root; rm -rf \/" is malformed/),
        expect.stringMatching(/^app\.yaml:21:5: unknown field "priviledged" in spec\.runtime; did you mean "privileged"\?/),
      ]),
    );
  });

  it('refuses a regionPolicy written in an App: only the region sets it', async () => {
    const problems = await load({ 'app.yaml': containerApp('    regionPolicy: {allowPrivileged: true}\n') });
    expect(problems.map(formatProblem)).toEqual([expect.stringMatching(/^app\.yaml:9:5: unknown field "regionPolicy" in spec\.runtime/)]);
  });

  it('reports a Deployment that sends an App to a Region whose devices would refuse it', async () => {
    const problems = await load({
      'app.yaml': containerApp(`    privileged: true
    volumes:
      - {hostPath: /srv/data, target: /data}
      - {hostPath: /srv2, target: /other}
`),
      'regions.yaml': `${REGION('eu')}spec:\n  containers:\n    hostPaths: [/srv]\n    allowPrivileged: true\n---\n${REGION('us')}`,
      'deploy.yaml': DEPLOYMENT('gw', 'gw', '1.0.0'),
    });
    const lines = problems.map(formatProblem);
    // eu allows privileged and /srv (but /srv2 is not under /srv); us allows nothing.
    expect(lines).toEqual([
      expect.stringMatching(/^deploy\.yaml:6:8: Deployment "gw" sends app "gw" to region "eu", whose devices would refuse it: host path \/srv2 is outside/),
      expect.stringMatching(/^deploy\.yaml:6:8: .* region "us", .*: host path \/srv\/data is outside the Region's allow-list \(spec\.containers\.hostPaths: none\)/),
      expect.stringMatching(/^deploy\.yaml:6:8: .* region "us", .*: host path \/srv2 is outside/),
      expect.stringMatching(/^deploy\.yaml:6:8: .* region "us", .*: it sets runtime\.privileged, and the Region does not allow privileged containers/),
    ]);
  });

  it('lets an App mount any host path where both it and the Region opt in', async () => {
    const problems = await load({
      'app.yaml': containerApp(`    anyHostPath: true
    volumes:
      - {hostPath: /var/log, target: /logs}
`),
      'regions.yaml': `${REGION('eu')}spec:\n  containers:\n    allowAnyHostPath: true\n    registryMirror: mirror.eu.local:5000\n`,
      'deploy.yaml': DEPLOYMENT('gw', 'gw', '1.0.0', '  selector:\n    regions: [eu]\n'),
    });
    expect(problems).toEqual([]);
  });
});
