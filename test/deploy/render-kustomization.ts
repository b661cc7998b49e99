import { execFile } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';

/**
 * Renders a Kustomize directory the way `kubectl kustomize` does, for the features
 * deploy/kubernetes uses: resources (files and directories), strategic merge patches,
 * namespace, namePrefix/nameSuffix with name references, commonLabels (selectors included)
 * and images. Any other kustomization field, or a patch directive it does not know, is an
 * error: a manifest that uses more than this renders, must fail the test rather than render
 * half right. Where kubectl exists, the tests also render with it (`renderWithKubectl`).
 */

export type Manifest = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; [key: string]: unknown };
  [key: string]: unknown;
};

type Json = unknown;
type JsonObject = Record<string, Json>;

interface Resource {
  manifest: Manifest;
  /** The name the resource had where it was declared: patches in overlays refer to it by that name. */
  originalName: string;
}

const SUPPORTED_FIELDS = new Set(['apiVersion', 'kind', 'resources', 'namePrefix', 'nameSuffix', 'commonLabels', 'patches', 'patchesStrategicMerge', 'images', 'namespace']);

/** List fields merged item by item (by this key) in a strategic merge patch; every other list is replaced. */
const MERGE_KEYS: Record<string, string> = {
  containers: 'name',
  initContainers: 'name',
  ephemeralContainers: 'name',
  env: 'name',
  volumes: 'name',
  volumeMounts: 'mountPath',
  volumeDevices: 'devicePath',
  imagePullSecrets: 'name',
  hostAliases: 'ip',
};

/** Kinds whose pod template sits at spec.template and whose spec.selector.matchLabels selects it. */
const WORKLOADS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet']);

export async function renderKustomization(dir: string): Promise<Manifest[]> {
  return (await build(resolve(dir))).map((r) => r.manifest);
}

/** `kubectl kustomize DIR`, or null when there is no kubectl. */
export async function renderWithKubectl(dir: string): Promise<Manifest[] | null> {
  let stdout: string;
  try {
    ({ stdout } = await promisify(execFile)('kubectl', ['kustomize', dir], { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 }));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  return parseManifests(stdout, `kubectl kustomize ${dir}`);
}

async function build(dir: string): Promise<Resource[]> {
  const kustomization = await readKustomization(dir);
  const unsupported = Object.keys(kustomization).filter((key) => !SUPPORTED_FIELDS.has(key));
  if (unsupported.length > 0) {
    throw new Error(`${dir}/kustomization.yaml uses ${unsupported.join(', ')}, which this test's renderer does not implement: extend test/deploy/render-kustomization.ts`);
  }

  const resources: Resource[] = [];
  for (const entry of asStrings(kustomization['resources'], `${dir}: resources`)) {
    const path = join(dir, entry);
    if ((await stat(path)).isDirectory()) resources.push(...(await build(path)));
    else for (const manifest of parseManifests(await readFile(path, 'utf8'), path)) resources.push({ manifest, originalName: manifest.metadata.name });
  }

  for (const patch of await patchesOf(dir, kustomization)) applyPatch(resources, patch.target, patch.body, patch.where);

  const namespace = kustomization['namespace'];
  if (typeof namespace === 'string') for (const r of resources) r.manifest.metadata.namespace = namespace;

  const prefix = typeof kustomization['namePrefix'] === 'string' ? kustomization['namePrefix'] : '';
  const suffix = typeof kustomization['nameSuffix'] === 'string' ? kustomization['nameSuffix'] : '';
  if (prefix || suffix) rename(resources, (name) => `${prefix}${name}${suffix}`);

  const labels = kustomization['commonLabels'];
  if (labels !== undefined) addLabels(resources, asStringMap(labels, `${dir}: commonLabels`));

  const images = kustomization['images'];
  if (images !== undefined) setImages(resources, images as JsonObject[]);
  return resources;
}

async function readKustomization(dir: string): Promise<JsonObject> {
  for (const name of ['kustomization.yaml', 'kustomization.yml', 'Kustomization']) {
    const path = join(dir, name);
    try {
      const [doc] = parseAllDocuments(await readFile(path, 'utf8'));
      if (!doc || doc.errors.length > 0) throw new Error(`${path}: ${doc?.errors.map((e) => e.message).join('; ') ?? 'empty'}`);
      return doc.toJS() as JsonObject;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  throw new Error(`${dir} has no kustomization.yaml`);
}

export function parseManifests(text: string, where: string): Manifest[] {
  const manifests: Manifest[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`${where}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value = doc.toJS() as Manifest | null;
    if (value === null) continue;
    if (typeof value.kind !== 'string' || typeof value.metadata?.name !== 'string') throw new Error(`${where}: a document without kind or metadata.name`);
    manifests.push(value);
  }
  return manifests;
}

interface Patch {
  target: { kind: string; name: string };
  body: JsonObject;
  where: string;
}

async function patchesOf(dir: string, kustomization: JsonObject): Promise<Patch[]> {
  const patches: Patch[] = [];
  const add = (text: string, where: string, target?: JsonObject) => {
    for (const body of parseManifests(text, where) as unknown as JsonObject[]) {
      const metadata = body['metadata'] as JsonObject;
      const kind = (target?.['kind'] as string | undefined) ?? (body['kind'] as string);
      const name = (target?.['name'] as string | undefined) ?? (metadata['name'] as string);
      patches.push({ target: { kind, name }, body, where });
    }
  };
  for (const entry of (kustomization['patches'] ?? []) as JsonObject[]) {
    const target = entry['target'] as JsonObject | undefined;
    if (target && Object.keys(target).some((k) => k !== 'kind' && k !== 'name')) throw new Error(`${dir}: patch targets by ${Object.keys(target).join(', ')} are not implemented here`);
    if (typeof entry['path'] === 'string') add(await readFile(join(dir, entry['path']), 'utf8'), join(dir, entry['path']), target);
    else if (typeof entry['patch'] === 'string') add(entry['patch'], `${dir}: inline patch`, target);
    else throw new Error(`${dir}: a patch without path or patch`);
  }
  for (const path of asStrings(kustomization['patchesStrategicMerge'] ?? [], `${dir}: patchesStrategicMerge`)) {
    add(await readFile(join(dir, path), 'utf8'), join(dir, path));
  }
  return patches;
}

function applyPatch(resources: Resource[], target: Patch['target'], body: JsonObject, where: string): void {
  if (Array.isArray(body)) throw new Error(`${where}: JSON 6902 patches are not implemented here`);
  const matches = resources.filter((r) => r.manifest.kind === target.kind && (r.originalName === target.name || r.manifest.metadata.name === target.name));
  if (matches.length !== 1) throw new Error(`${where}: the patch of ${target.kind}/${target.name} matches ${matches.length} resources`);
  const resource = matches[0]!;
  const name = resource.manifest.metadata.name;
  resource.manifest = strategicMerge(resource.manifest, body, '') as Manifest;
  // The patch names its target by the original name; the resource keeps the name it has now.
  resource.manifest.metadata.name = name;
}

/** A strategic merge patch as Kubernetes applies it, for the fields listed in MERGE_KEYS; `null` deletes. */
export function strategicMerge(original: Json, patch: Json, field: string): Json {
  if (isObject(patch) && isObject(original)) {
    const merged: JsonObject = structuredClone(original);
    for (const [key, value] of Object.entries(patch)) {
      if (key.startsWith('$')) throw new Error(`patch directive ${key} is not implemented here`);
      if (value === null) delete merged[key];
      else merged[key] = strategicMerge(original[key], value, key);
    }
    return merged;
  }
  if (Array.isArray(patch) && Array.isArray(original)) {
    const key = field === 'ports' ? (patch.some((p) => isObject(p) && 'containerPort' in p) ? 'containerPort' : 'port') : MERGE_KEYS[field];
    if (!key) return structuredClone(patch);
    const merged = structuredClone(original) as Json[];
    for (const item of patch) {
      if (!isObject(item) || !(key in item)) throw new Error(`an item of ${field} without its merge key ${key}`);
      const at = merged.findIndex((o) => isObject(o) && o[key] === item[key]);
      if (at === -1) merged.push(structuredClone(item));
      else merged[at] = strategicMerge(merged[at], item, '');
    }
    return merged;
  }
  return structuredClone(patch);
}

/** Renames every resource and, as kustomize does, every reference to it from the others. */
function rename(resources: Resource[], newName: (name: string) => string): void {
  const renamed = new Map<string, string>();
  for (const r of resources) {
    const name = newName(r.manifest.metadata.name);
    renamed.set(`${r.manifest.kind}/${r.manifest.metadata.name}`, name);
    r.manifest.metadata.name = name;
  }
  const ref = (kind: string, holder: JsonObject | undefined, field: string) => {
    if (!holder || typeof holder[field] !== 'string') return;
    const to = renamed.get(`${kind}/${holder[field]}`);
    if (to) holder[field] = to;
  };
  for (const r of resources) {
    for (const pod of podSpecs(r.manifest)) {
      ref('ServiceAccount', pod, 'serviceAccountName');
      for (const volume of (pod['volumes'] ?? []) as JsonObject[]) {
        ref('PersistentVolumeClaim', volume['persistentVolumeClaim'] as JsonObject | undefined, 'claimName');
        ref('Secret', volume['secret'] as JsonObject | undefined, 'secretName');
        ref('ConfigMap', volume['configMap'] as JsonObject | undefined, 'name');
      }
      for (const container of containersOf(pod)) {
        for (const source of (container['envFrom'] ?? []) as JsonObject[]) {
          ref('Secret', source['secretRef'] as JsonObject | undefined, 'name');
          ref('ConfigMap', source['configMapRef'] as JsonObject | undefined, 'name');
        }
        for (const env of (container['env'] ?? []) as JsonObject[]) {
          const from = env['valueFrom'] as JsonObject | undefined;
          ref('Secret', from?.['secretKeyRef'] as JsonObject | undefined, 'name');
          ref('ConfigMap', from?.['configMapKeyRef'] as JsonObject | undefined, 'name');
        }
      }
    }
  }
}

function addLabels(resources: Resource[], labels: Record<string, string>): void {
  for (const { manifest } of resources) {
    manifest.metadata.labels = { ...manifest.metadata.labels, ...labels };
    const spec = manifest['spec'] as JsonObject | undefined;
    if (!spec) continue;
    if (manifest.kind === 'Service') spec['selector'] = { ...(spec['selector'] as JsonObject | undefined), ...labels };
    if (WORKLOADS.has(manifest.kind)) {
      const selector = (spec['selector'] ??= {}) as JsonObject;
      selector['matchLabels'] = { ...(selector['matchLabels'] as JsonObject | undefined), ...labels };
      const template = (spec['template'] ??= {}) as JsonObject;
      const metadata = (template['metadata'] ??= {}) as JsonObject;
      metadata['labels'] = { ...(metadata['labels'] as JsonObject | undefined), ...labels };
    }
  }
}

function setImages(resources: Resource[], images: JsonObject[]): void {
  for (const { manifest } of resources) {
    for (const pod of podSpecs(manifest)) {
      for (const container of containersOf(pod)) {
        const image = container['image'] as string;
        const match = /^(.*?)(?::([^:/@]+))?(@sha256:[0-9a-f]+)?$/.exec(image)!;
        const rule = images.find((i) => i['name'] === match[1]);
        if (!rule) continue;
        const name = (rule['newName'] as string | undefined) ?? match[1];
        if (typeof rule['digest'] === 'string') container['image'] = `${name}@${rule['digest']}`;
        else if (rule['newTag'] !== undefined) container['image'] = `${name}:${String(rule['newTag'])}`;
        else container['image'] = `${name}${match[2] ? `:${match[2]}` : ''}${match[3] ?? ''}`;
      }
    }
  }
}

/** The pod specs of a workload (its template's) or of a bare Pod. */
export function podSpecs(manifest: Manifest): JsonObject[] {
  const spec = manifest['spec'] as JsonObject | undefined;
  if (!spec) return [];
  if (manifest.kind === 'Pod') return [spec];
  const template = spec['template'] as JsonObject | undefined;
  const pod = template?.['spec'] as JsonObject | undefined;
  return pod ? [pod] : [];
}

export function containersOf(pod: JsonObject): JsonObject[] {
  return [...((pod['initContainers'] ?? []) as JsonObject[]), ...((pod['containers'] ?? []) as JsonObject[])];
}

function isObject(value: Json): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function asStrings(value: Json, where: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) throw new Error(`${where} must be a list of strings`);
  return value as string[];
}

function asStringMap(value: Json, where: string): Record<string, string> {
  if (!isObject(value)) throw new Error(`${where} must be a map`);
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, String(v)]));
}
