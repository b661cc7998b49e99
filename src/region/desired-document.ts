import type { DeviceDesired, DeviceId } from '../core/types.js';
import type { DesiredAppWire, DesiredResponse } from '../protocol/types.js';
import type { AppCatalog, StateStore } from '../reconciler/state-store.js';

/** Adds to one app's desired state before it is sent (the artifact relay's `relay` field). */
export type DesiredDecorator = (device: DeviceId, app: string, wire: DesiredAppWire) => void;

/** A device's desired state as the protocol carries it (HTTP `GET .../desired`, MQTT `.../desired`). */
export function desiredResponse(store: StateStore, region: string, id: DeviceId, decorate?: DesiredDecorator): DesiredResponse {
  const handed = store.getHanded(id);
  return { device: id, region, revision: handed?.revision ?? null, generation: handed?.generation ?? 0, apps: wireApps(handed?.apps ?? {}, store.getCatalog(), id, decorate) };
}

function wireApps(apps: DeviceDesired, catalog: AppCatalog, device?: DeviceId, decorate?: DesiredDecorator): Record<string, DesiredAppWire> {
  const wire: Record<string, DesiredAppWire> = {};
  for (const [name, desired] of Object.entries(apps)) {
    const app: DesiredAppWire = { version: desired.version, deployment: desired.deployment };
    if (desired.attempt) app.attempt = desired.attempt;
    const spec = catalog[name];
    if (spec?.runtime) app.runtime = spec.runtime;
    const artifact = spec?.artifacts?.[desired.version];
    if (artifact) app.artifact = artifact;
    if (spec?.healthCheck) app.healthCheck = spec.healthCheck;
    if (decorate && device !== undefined) decorate(device, name, app);
    wire[name] = app;
  }
  return wire;
}

/** A desired state ready to send: its generation and its JSON text. */
export interface DesiredMessage {
  generation: number;
  payload: string;
}

/** Distinct app sets kept serialized; far more than a fleet has at once (one per Deployment version mix). */
const MAX_CACHED = 10_000;

/**
 * Desired documents built once per distinct content: the `apps` part (runtime, artifact, health check
 * of each app and version) is serialized once per distinct set of app versions and catalog, and each
 * device's message is that text with its own id, revision and generation around it. A rollout to
 * 50,000 devices of one version serializes its apps once, not 50,000 times.
 * The text is exactly `JSON.stringify(desiredResponse(...))`.
 */
export class DesiredDocuments {
  private catalog: AppCatalog | null = null;
  private readonly apps = new Map<string, string>();
  private readonly regionJson: string;

  constructor(
    private readonly store: StateStore,
    private readonly region: string,
    /** The artifact relay's per-device additions: apps with a file artifact are then built per device. */
    private readonly decorate?: DesiredDecorator,
  ) {
    this.regionJson = JSON.stringify(region);
  }

  message(id: DeviceId): DesiredMessage {
    const handed = this.store.getHanded(id);
    const generation = handed?.generation ?? 0;
    if (this.decorate && hasFileArtifact(handed?.apps ?? {}, this.store.getCatalog())) {
      // Which delta a device gets depends on what it runs: no shared text for these.
      return { generation, payload: JSON.stringify(desiredResponse(this.store, this.region, id, this.decorate)) };
    }
    const apps = this.appsJson(handed?.apps ?? {});
    const payload = `{"device":${JSON.stringify(id)},"region":${this.regionJson},"revision":${handed ? JSON.stringify(handed.revision) : 'null'},"generation":${generation},"apps":${apps}}`;
    return { generation, payload };
  }

  private appsJson(apps: DeviceDesired): string {
    const catalog = this.store.getCatalog();
    if (catalog !== this.catalog) {
      this.catalog = catalog;
      this.apps.clear();
    }
    let key = '';
    // The attempt (an operator's retry) is part of the document, so part of the key.
    for (const name in apps) key += `${name}\u0000${apps[name]!.version}\u0000${apps[name]!.deployment}\u0000${apps[name]!.attempt ?? 0}\u0001`;
    let json = this.apps.get(key);
    if (json === undefined) {
      json = JSON.stringify(wireApps(apps, catalog));
      if (this.apps.size >= MAX_CACHED) this.apps.clear();
      this.apps.set(key, json);
    }
    return json;
  }
}

function hasFileArtifact(apps: DeviceDesired, catalog: AppCatalog): boolean {
  for (const name in apps) {
    const artifact = catalog[name]?.artifacts?.[apps[name]!.version];
    if (artifact && 'url' in artifact) return true;
  }
  return false;
}
