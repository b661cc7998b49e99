import type { FastifyInstance } from 'fastify';
import type { DeviceId } from '../../core/types.js';
import { HttpError } from '../../http/http-server.js';
import type { StateStore } from '../../reconciler/state-store.js';
import type { DeviceIdentityStore } from '../../storage/device-identity-store.js';
import { keyFingerprint, type DeviceIdentity } from '../device-identity.js';
import { hashDeviceToken, issueDeviceToken } from '../device-tokens.js';
import { operatorGuard } from './operator-routes.js';

export interface IdentityAdminDeps {
  store: StateStore & DeviceIdentityStore;
  identity: DeviceIdentity;
  operatorToken: string | null;
  clock: () => number;
  /** After a reset, e.g. to end the device's open polls and broker session (its token is gone). */
  onReset?: (deviceId: DeviceId) => void;
  onApprove?: (deviceId: DeviceId) => void;
}

/** A pending device as `cascade devices list --pending` shows it. */
export interface PendingDeviceView {
  id: DeviceId;
  labels: Record<string, string>;
  /** `SHA256:...` of the key it asked with (compare with the fingerprint the agent logs), or null. */
  key: string | null;
  requestedAt: number;
  lastAttemptAt: number;
}

/**
 * Operator endpoints of device identity:
 * - `GET  /api/v1/admin/devices/pending`: devices waiting for approval, with their key fingerprints.
 * - `POST /api/v1/admin/devices/:id/approve`: the pending device may enrol, with the key it asked with.
 * - `POST /api/v1/admin/devices/:id/reset`: unbinds the id from its key and ends its token (the device
 *   was replaced or lost its key); the next enrolment with the enrolment token binds a new key.
 *   Also drops a pending request for the id.
 */
/** The devices waiting for approval, as operators see them (also on the region's dashboard). */
export function pendingDeviceViews(store: Pick<DeviceIdentityStore, 'listPendingDevices'>): PendingDeviceView[] {
  return store.listPendingDevices().map((p) => ({
    id: p.id,
    labels: p.labels,
    key: p.publicKey ? keyFingerprint(p.publicKey) : null,
    requestedAt: p.requestedAt,
    lastAttemptAt: p.lastAttemptAt,
  }));
}

export function registerIdentityAdminRoutes(app: FastifyInstance, deps: IdentityAdminDeps): void {
  const guard = operatorGuard(deps.operatorToken);
  app.get('/api/v1/admin/devices/pending', { preHandler: guard }, async (): Promise<PendingDeviceView[]> => pendingDeviceViews(deps.store));
  app.post<{ Params: { id: string } }>('/api/v1/admin/devices/:id/approve', { preHandler: guard }, async (request) => {
    const { id } = request.params;
    // An unusable token: the device gets its own when it next asks to enrol.
    const approved = deps.identity.approve(id, (labels) => deps.store.enrollDevice(id, labels, hashDeviceToken(issueDeviceToken()), deps.clock()));
    if (!approved) throw new HttpError(404, 'device-not-pending', `no device ${id} waits for approval in this region (cascade devices list --pending)`);
    request.log.info({ deviceId: id }, `device ${id} approved`);
    deps.onApprove?.(id);
    return { id, approved: true };
  });
  app.post<{ Params: { id: string } }>('/api/v1/admin/devices/:id/reset', { preHandler: guard }, async (request) => {
    const { id } = request.params;
    const device = deps.store.getDevice(id);
    const droppedPending = deps.store.deletePendingDevice(id);
    if (!device && !droppedPending) throw new HttpError(404, 'device-unknown', `no device ${id} is enrolled or pending in this region`);
    if (device) {
      const key = deps.store.getDeviceKey(id);
      deps.store.enrollDevice(id, device.labels, hashDeviceToken(issueDeviceToken()), deps.clock());
      deps.store.setDeviceKey(id, null);
      deps.store.clearReportSeq(id);
      deps.onReset?.(id);
      request.log.warn({ deviceId: id, key: key ? keyFingerprint(key) : null }, `device ${id} reset: its key and token no longer count; the next enrolment binds a new key`);
    }
    return { id, reset: true, ...(droppedPending ? { droppedPending: true } : {}) };
  });
}
