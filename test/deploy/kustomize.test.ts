import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { containersOf, podSpecs, renderKustomization, renderWithKubectl, strategicMerge, type Manifest } from './render-kustomization.js';

/**
 * Renders every overlay of deploy/kubernetes (with this test's renderer, and with
 * `kubectl kustomize` too where kubectl exists) and checks that the pieces fit together:
 * selectors, ports, probes, claims, Secrets, the image's user, and the region each overlay runs.
 */

const ROOT = resolve(import.meta.dirname, '../..');
const KUBERNETES = join(ROOT, 'deploy/kubernetes');
const OVERLAYS = join(KUBERNETES, 'overlays');

type Obj = Record<string, unknown>;
interface Rendering {
  renderer: string;
  manifests: Manifest[];
}

const overlayNames = (await readdir(OVERLAYS, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name).sort();
const renderings = new Map<string, Rendering[]>();
let templateRegions: string[];
let regionVariables: Set<string>;
let imageUser: { uid: number; gid: number };
let deployReadme: string;

beforeAll(async () => {
  templateRegions = await regionsOfTemplate();
  regionVariables = await variablesTheRegionReads();
  imageUser = await dockerfileUser();
  deployReadme = await readFile(join(ROOT, 'deploy/README.md'), 'utf8');
  for (const overlay of overlayNames) {
    const dir = join(OVERLAYS, overlay);
    const list: Rendering[] = [{ renderer: 'test renderer', manifests: await renderKustomization(dir) }];
    const kubectl = await renderWithKubectl(dir);
    if (kubectl) list.push({ renderer: 'kubectl kustomize', manifests: kubectl });
    renderings.set(overlay, list);
  }
});

describe('deploy/kubernetes', () => {
  it('has one overlay per Region of the template fleet', () => {
    expect(overlayNames).toEqual([...templateRegions].sort());
  });

  describe.each(overlayNames)('overlays/%s', (region) => {
    const each = (check: (r: Rendering) => void) => () => {
      for (const rendering of renderings.get(region)!) {
        try {
          check(rendering);
        } catch (err) {
          (err as Error).message = `[${rendering.renderer}] ${(err as Error).message}`;
          throw err;
        }
      }
    };

    it(
      'renders one Deployment, Service and PersistentVolumeClaim, named for the region',
      each(({ manifests }) => {
        expect(manifests.map((m) => `${m.kind}/${m.metadata.name}`).sort()).toEqual([
          `Deployment/${region}-cascade-region`,
          `PersistentVolumeClaim/${region}-cascade-region-state`,
          `Service/${region}-cascade-region`,
        ]);
      }),
    );

    it(
      'runs `cascade region` for this region, with variables the region reads',
      each(({ manifests }) => {
        const container = regionContainer(manifests);
        expect(container['args']).toEqual(['region']);
        const env = envOf(container);
        expect(env.get('CASCADE_REGION')).toBe(region);
        expect(templateRegions).toContain(env.get('CASCADE_REGION'));
        expect(env.get('CASCADE_REPO')).toMatch(/^https?:\/\//);
        // A misspelt variable would be ignored silently by the region.
        for (const name of env.keys()) expect(regionVariables, `${name} is not a variable cascade region reads`).toContain(name);
      }),
    );

    it(
      'one replica, replaced with Recreate, the image from `images:`, requests and limits',
      each(({ manifests }) => {
        const deployment = only(manifests, 'Deployment');
        const spec = deployment['spec'] as Obj;
        expect(spec['replicas']).toBe(1);
        expect(spec['strategy']).toEqual({ type: 'Recreate' });
        const container = regionContainer(manifests);
        expect(container['image']).toMatch(/^[^\s]+\/cascade:[\w.-]+$/);
        const resources = container['resources'] as { requests: Obj; limits: Obj };
        for (const kind of ['requests', 'limits'] as const) {
          expect(Object.keys(resources[kind]).sort(), kind).toEqual(['cpu', 'memory']);
        }
      }),
    );

    it(
      "the Service selects exactly this Deployment's pods and targets a declared port",
      each(({ manifests }) => {
        const deployment = only(manifests, 'Deployment');
        const service = only(manifests, 'Service');
        const spec = deployment['spec'] as { selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string> } } };
        const podLabels = spec.template.metadata.labels;
        expect(isSubset(spec.selector.matchLabels, podLabels)).toBe(true);
        const selector = (service['spec'] as { selector: Record<string, string> }).selector;
        expect(Object.keys(selector).length).toBeGreaterThan(0);
        expect(isSubset(selector, podLabels), `Service selector ${JSON.stringify(selector)} vs pod labels ${JSON.stringify(podLabels)}`).toBe(true);
        const ports = (regionContainer(manifests)['ports'] as Array<{ name?: string; containerPort: number }>) ?? [];
        for (const port of (service['spec'] as { ports: Array<{ targetPort: string | number }> }).ports) {
          expect(ports.some((p) => p.name === port.targetPort || p.containerPort === port.targetPort), `targetPort ${port.targetPort}`).toBe(true);
        }
      }),
    );

    it(
      'probes ask /healthz and /readyz on the port the region listens on',
      each(({ manifests }) => {
        const container = regionContainer(manifests);
        const listenPort = Number(/:(\d+)$/.exec(envOf(container).get('CASCADE_LISTEN') ?? '0.0.0.0:8080')![1]);
        const ports = container['ports'] as Array<{ name?: string; containerPort: number }>;
        const probePath = (probe: string): string => {
          const get = (container[probe] as { httpGet?: { path: string; port: string | number } } | undefined)?.httpGet;
          expect(get, `${probe} is an httpGet probe`).toBeDefined();
          const port = ports.find((p) => p.name === get!.port || p.containerPort === get!.port);
          expect(port, `${probe} port ${get!.port} is declared`).toBeDefined();
          expect(port!.containerPort, `${probe} port is CASCADE_LISTEN's`).toBe(listenPort);
          return get!.path;
        };
        expect(probePath('livenessProbe')).toBe('/healthz');
        expect(probePath('readinessProbe')).toBe('/readyz');
        expect(probePath('startupProbe')).toBe('/healthz');
      }),
    );

    it(
      "state on the claim, /tmp on an emptyDir, a read-only root, non-root as the image's user",
      each(({ manifests }) => {
        const pod = podSpecs(only(manifests, 'Deployment'))[0]!;
        const container = regionContainer(manifests);
        const volumes = new Map((pod['volumes'] as Array<Obj & { name: string }>).map((v) => [v.name, v]));
        const mounts = new Map((container['volumeMounts'] as Array<{ name: string; mountPath: string }>).map((m) => [m.mountPath, m.name]));
        for (const name of mounts.values()) expect(volumes.has(name), `volume ${name} is declared`).toBe(true);

        const dataDir = envOf(container).get('CASCADE_DATA') ?? '/var/lib/cascade';
        const state = volumes.get(mounts.get(dataDir)!);
        const claimName = (state?.['persistentVolumeClaim'] as { claimName?: string } | undefined)?.claimName;
        expect(claimName, `${dataDir} is on a PersistentVolumeClaim`).toBeDefined();
        expect(manifests.some((m) => m.kind === 'PersistentVolumeClaim' && m.metadata.name === claimName), `claim ${claimName} is rendered`).toBe(true);
        expect(volumes.get(mounts.get('/tmp')!)?.['emptyDir']).toBeDefined();

        const podSecurity = pod['securityContext'] as Obj;
        expect(podSecurity).toMatchObject({ runAsNonRoot: true, runAsUser: imageUser.uid, runAsGroup: imageUser.gid, fsGroup: imageUser.gid });
        expect(container['securityContext']).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
      }),
    );

    it(
      "credentials come from this region's Secret, which deploy/README.md tells how to create",
      each(({ manifests }) => {
        const secrets = secretReferences(regionContainer(manifests));
        expect(secrets.length).toBeGreaterThan(0);
        for (const name of secrets) {
          expect(name, "the Secret is the region's own (its enrolment token)").toBe(`${region}-cascade-region-credentials`);
          const rendered = manifests.some((m) => m.kind === 'Secret' && m.metadata.name === name);
          expect(rendered || deployReadme.includes(name), `Secret ${name} is rendered or documented in deploy/README.md`).toBe(true);
        }
        // No credential is written into the manifests themselves.
        for (const [name, value] of envOf(regionContainer(manifests))) {
          if (/TOKEN|PASSWORD|SECRET/.test(name)) expect(value, `${name} must come from the Secret`).toBeUndefined();
        }
      }),
    );
  });

  it("regions can share a namespace: no name collides and no Service selects another region's pods", () => {
    const names = new Set<string>();
    for (const overlay of overlayNames) {
      const { manifests } = renderings.get(overlay)![0]!;
      for (const m of manifests) {
        const id = `${m.kind}/${m.metadata.name}`;
        expect(names.has(id), `${id} appears in two overlays`).toBe(false);
        names.add(id);
      }
    }
    for (const a of overlayNames) {
      const selector = (only(renderings.get(a)![0]!.manifests, 'Service')['spec'] as { selector: Record<string, string> }).selector;
      for (const b of overlayNames.filter((o) => o !== a)) {
        const pods = (only(renderings.get(b)![0]!.manifests, 'Deployment')['spec'] as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels;
        expect(isSubset(selector, pods), `the ${a} Service selects ${b}'s pods`).toBe(false);
      }
    }
  });
});

describe('the test renderer', () => {
  it('merges containers and env by name, replaces other lists, deletes with null', () => {
    const original = {
      spec: {
        containers: [{ name: 'region', args: ['region'], env: [{ name: 'A', value: '1' }, { name: 'B', value: '2' }], envFrom: [{ secretRef: { name: 'x' } }] }],
        volumes: [{ name: 'tmp', emptyDir: {} }],
      },
    };
    const patch = {
      spec: {
        containers: [{ name: 'region', args: ['agent'], env: [{ name: 'B', value: '3' }, { name: 'C', value: '4' }], envFrom: [{ secretRef: { name: 'y' } }] }],
        volumes: [{ name: 'tmp', emptyDir: null, persistentVolumeClaim: { claimName: 'c' } }],
      },
    };
    expect(strategicMerge(original, patch, '')).toEqual({
      spec: {
        containers: [{ name: 'region', args: ['agent'], env: [{ name: 'A', value: '1' }, { name: 'B', value: '3' }, { name: 'C', value: '4' }], envFrom: [{ secretRef: { name: 'y' } }] }],
        volumes: [{ name: 'tmp', persistentVolumeClaim: { claimName: 'c' } }],
      },
    });
    expect(original.spec.containers[0]!.env).toHaveLength(2);
  });

  it('renames the claim a Deployment mounts along with the claim, and labels selectors', async () => {
    const [base] = renderings.get(overlayNames[0]!)!;
    const deployment = only(base!.manifests, 'Deployment');
    const volumes = podSpecs(deployment)[0]!['volumes'] as Array<{ persistentVolumeClaim?: { claimName: string } }>;
    expect(volumes.find((v) => v.persistentVolumeClaim)!.persistentVolumeClaim!.claimName).toBe(`${overlayNames[0]}-cascade-region-state`);
    const overlay = parse(await readFile(join(OVERLAYS, overlayNames[0]!, 'kustomization.yaml'), 'utf8')) as { commonLabels: Record<string, string> };
    expect(isSubset(overlay.commonLabels, (deployment['spec'] as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels)).toBe(true);
  });

  it('refuses kustomization fields it does not implement', async () => {
    await expect(renderKustomization(join(ROOT, 'test/deploy/fixtures/unsupported'))).rejects.toThrow(/uses configMapGenerator, which this test's renderer does not implement/);
  });
});

function only(manifests: Manifest[], kind: string): Manifest {
  const found = manifests.filter((m) => m.kind === kind);
  expect(found, `exactly one ${kind}`).toHaveLength(1);
  return found[0]!;
}

function regionContainer(manifests: Manifest[]): Obj {
  const containers = containersOf(podSpecs(only(manifests, 'Deployment'))[0]!);
  const region = containers.find((c) => c['name'] === 'region');
  expect(region, 'a container named region').toBeDefined();
  return region!;
}

/** name -> value (undefined when the value comes from elsewhere). */
function envOf(container: Obj): Map<string, string | undefined> {
  return new Map(((container['env'] ?? []) as Array<{ name: string; value?: string }>).map((e) => [e.name, e.value]));
}

function secretReferences(container: Obj): string[] {
  const names: string[] = [];
  for (const source of (container['envFrom'] ?? []) as Array<{ secretRef?: { name: string } }>) if (source.secretRef) names.push(source.secretRef.name);
  for (const env of (container['env'] ?? []) as Array<{ valueFrom?: { secretKeyRef?: { name: string } } }>) {
    if (env.valueFrom?.secretKeyRef) names.push(env.valueFrom.secretKeyRef.name);
  }
  return names;
}

function isSubset(small: Record<string, string>, big: Record<string, string>): boolean {
  return Object.entries(small).every(([k, v]) => big[k] === v);
}

async function regionsOfTemplate(): Promise<string[]> {
  const dir = join(ROOT, 'fleet-repo-template/regions');
  const names: string[] = [];
  for (const file of await readdir(dir)) {
    const doc = parse(await readFile(join(dir, file), 'utf8')) as { kind: string; metadata: { name: string } };
    if (doc.kind === 'Region') names.push(doc.metadata.name);
  }
  return names;
}

/** The CASCADE_* variables `cascade region` reads: its options' .env() and the logger's. */
async function variablesTheRegionReads(): Promise<Set<string>> {
  const names = new Set<string>();
  for (const file of ['src/cli/commands/region.ts', 'src/cli/logger.ts']) {
    const text = await readFile(join(ROOT, file), 'utf8');
    for (const match of text.matchAll(/\.env\('(CASCADE_[A-Z_]+)'\)|process\.env\['(CASCADE_[A-Z_]+)'\]/g)) names.add(match[1] ?? match[2]!);
  }
  expect(names.has('CASCADE_REGION')).toBe(true);
  return names;
}

async function dockerfileUser(): Promise<{ uid: number; gid: number }> {
  const match = /^USER\s+(\d+):(\d+)\s*$/m.exec(await readFile(join(ROOT, 'Dockerfile'), 'utf8'));
  expect(match, 'the Dockerfile sets a numeric USER uid:gid').not.toBeNull();
  return { uid: Number(match![1]), gid: Number(match![2]) };
}
