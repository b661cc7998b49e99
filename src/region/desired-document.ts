import type { DeviceId } from '../core/types.js';
import type { DesiredAppWire, DesiredResponse } from '../protocol/types.js';
import type { StateStore } from '../reconciler/state-store.js';

/** A device's desired state as the protocol carries it (HTTP `GET .../desired`, MQTT `.../desired`). */
export function desiredResponse(store: StateStore, region: string, id: DeviceId): DesiredResponse {
  const handed = store.getHanded(id);
  const catalog = store.getCatalog();
  const apps: Record<string, DesiredAppWire> = {};
  for (const [name, desired] of Object.entries(handed?.apps ?? {})) {
    const wire: DesiredAppWire = { version: desired.version, deployment: desired.deployment };
    if (desired.attempt) wire.attempt = desired.attempt;
    const spec = catalog[name];
    if (spec?.runtime) wire.runtime = spec.runtime;
    const artifact = spec?.artifacts?.[desired.version];
    if (artifact) wire.artifact = artifact;
    if (spec?.healthCheck) wire.healthCheck = spec.healthCheck;
    apps[name] = wire;
  }
  return { device: id, region, revision: handed?.revision ?? null, generation: handed?.generation ?? 0, apps };
}
