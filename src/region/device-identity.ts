import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { DeviceId, Labels } from '../core/types.js';
import { parseDevicePublicKey, verifyProof, type ProofPurpose } from '../protocol/device-identity.js';
import { errorCodes, type ChallengeResponse, type EnrollPendingResponse, type EnrollRequest, type KeyProof } from '../protocol/types.js';
import type { DeviceIdentityStore } from '../storage/device-identity-store.js';
import type { DeviceRecord } from '../storage/region-records.js';
import { HttpError } from '../http/http-server.js';
import { PENDING_RETRY_SECONDS, type EnrollmentPolicy } from './enrollment-policy.js';
import type { SecurityMetrics } from './security-metrics.js';

/**
 * Device identity bound to a key, the region's side (protocol/device-identity.ts has the wire rules).
 *
 * - An id enrolled with a key is enrolled again, or gets a new token, only with a proof made by that
 *   key over a nonce this region issued for that id (single use, 60 s). The shared enrolment token alone never
 *   moves an id to another device: such an attempt is refused (403), logged at warn and counted in
 *   `cascade_enrollment_refusals_total{reason}`.
 * - Migration: an id never enrolled with a key (agents before keys, or after `cascade devices reset`)
 *   enrols as before with the enrolment token alone; the first enrolment that brings a key binds it.
 * - Under `--enrollment-policy approve` a new id waits in `pending` until an operator approves it;
 *   the key it asked with is the one approved, and another key asking for the same id is refused.
 */
export type EnrollmentDecision =
  /** Issue a token; bind `publicKey` to the id when not null. */
  | { kind: 'enroll'; publicKey: string | null }
  | { kind: 'pending'; answer: EnrollPendingResponse };

export type RefusalReason = 'key-required' | 'key-mismatch' | 'proof-invalid' | 'pending-key-mismatch' | 'key-unbound';

const NONCE_TTL_MS = 60_000;
const NONCE_MAC_BYTES = 16;

/** `SHA256:<base64>` of the key's DER bytes, as ssh-keygen prints fingerprints; what operators compare. */
export function keyFingerprint(publicKey: string): string {
  return `SHA256:${createHash('sha256').update(Buffer.from(publicKey, 'base64')).digest('base64').replace(/=+$/, '')}`;
}

export interface DeviceIdentityDeps {
  store: DeviceIdentityStore;
  region: string;
  policy: EnrollmentPolicy;
  metrics: Pick<SecurityMetrics, 'enrollmentRefusals'>;
  clock: () => number;
}

export class DeviceIdentity {
  /**
   * Nonces carry their expiry and a MAC under a per-process secret, so the region keeps nothing per
   * challenge (a flood of challenges costs no memory, and cannot push out the nonce a real device is
   * signing). Only nonces spent by a proof that held are remembered, until they expire: single use.
   * Expired ones are dropped at the next proof, or by a timer when no proof comes (an enrolment burst
   * of 50,000 devices left the last minute's nonces, ~100 bytes each, in memory for good).
   */
  private readonly secret = randomBytes(32);
  private readonly spent = new Map<string, number>();
  private pruneTimer: NodeJS.Timeout | null = null;

  constructor(private readonly deps: DeviceIdentityDeps) {}

  private mac(deviceId: DeviceId, body: Buffer): Buffer {
    return createHmac('sha256', this.secret).update(this.deps.region).update('\0').update(deviceId).update('\0').update(body).digest().subarray(0, NONCE_MAC_BYTES);
  }

  /** A fresh single-use nonce for the device. */
  challenge(deviceId: DeviceId): ChallengeResponse {
    const body = Buffer.alloc(8 + 16);
    body.writeBigUInt64BE(BigInt(this.deps.clock() + NONCE_TTL_MS), 0);
    randomBytes(16).copy(body, 8);
    const nonce = Buffer.concat([body, this.mac(deviceId, body)]).toString('base64url');
    return { region: this.deps.region, nonce, expiresInSeconds: NONCE_TTL_MS / 1000 };
  }

  /** Whether `proof` is `publicKey`'s signature over a nonce this region issued to the device, unexpired and unspent. */
  private proofHolds(deviceId: DeviceId, publicKey: string, proof: KeyProof, purpose: ProofPurpose): boolean {
    const now = this.deps.clock();
    const raw = Buffer.from(proof.nonce, 'base64url');
    if (raw.length !== 8 + 16 + NONCE_MAC_BYTES) return false;
    const body = raw.subarray(0, 24);
    if (!timingSafeEqual(raw.subarray(24), this.mac(deviceId, body))) return false;
    const expiresAt = Number(body.readBigUInt64BE(0));
    if (expiresAt < now || this.spent.has(proof.nonce)) return false;
    if (!verifyProof(publicKey, purpose, this.deps.region, deviceId, proof.nonce, proof.signature)) return false;
    this.pruneSpent(now);
    this.spent.set(proof.nonce, expiresAt);
    this.schedulePrune();
    return true;
  }

  /** Drops the spent nonces that expired by `now` (they are refused as expired anyway). Insertion order is expiry order. */
  private pruneSpent(now: number): void {
    for (const [nonce, at] of this.spent) {
      if (at >= now) break;
      this.spent.delete(nonce);
    }
  }

  /** While nonces are remembered, looks again once the oldest could have expired; no timer when none are. */
  private schedulePrune(): void {
    if (this.pruneTimer !== null || this.spent.size === 0) return;
    this.pruneTimer = setTimeout(() => {
      this.pruneTimer = null;
      this.pruneSpent(this.deps.clock());
      this.schedulePrune();
    }, NONCE_TTL_MS + 1_000);
    this.pruneTimer.unref();
  }

  /** Spent nonces remembered now (tests read it). */
  get spentNonces(): number {
    return this.spent.size;
  }

  private refuse(log: FastifyBaseLogger, deviceId: DeviceId, reason: RefusalReason, code: string, message: string): HttpError {
    this.deps.metrics.enrollmentRefusals.inc({ reason });
    log.warn({ deviceId, reason }, `enrolment of ${deviceId} refused (${reason}): ${message}`);
    return new HttpError(403, code, `device ${deviceId}: ${message}`);
  }

  /**
   * What to do with an enrolment that passed the enrolment-token and revocation checks. Throws an
   * HttpError for a refusal.
   */
  decide(request: EnrollRequest, existing: DeviceRecord | null, log: FastifyBaseLogger): EnrollmentDecision {
    const { deviceId, publicKey, proof } = request;
    const { store } = this.deps;
    if (publicKey !== undefined) {
      if (!parseDevicePublicKey(publicKey)) {
        throw new HttpError(400, errorCodes.invalidBody, `device ${deviceId}: publicKey is not an Ed25519 public key (DER SubjectPublicKeyInfo, base64)`);
      }
      if (!proof || !this.proofHolds(deviceId, publicKey, proof, 'enroll')) {
        throw this.refuse(log, deviceId, 'proof-invalid', errorCodes.deviceKeyProofInvalid, `the key proof does not verify: sign a fresh nonce from POST /api/v1/devices/${deviceId}/challenge with the key sent`);
      }
    }
    if (existing) {
      const bound = store.getDeviceKey(deviceId);
      if (bound === null) return { kind: 'enroll', publicKey: publicKey ?? null };
      if (publicKey === undefined) {
        throw this.refuse(log, deviceId, 'key-required', errorCodes.deviceKeyRequired, 'this id is bound to a device key; enrolling it again needs a proof made with that key (an operator can release the id with `cascade devices reset ID`)');
      }
      if (publicKey !== bound) {
        throw this.refuse(log, deviceId, 'key-mismatch', errorCodes.deviceKeyRequired, `this id is bound to another device key (${keyFingerprint(bound)}); an operator can release the id with \`cascade devices reset ID\``);
      }
      return { kind: 'enroll', publicKey };
    }
    if (this.deps.policy === 'auto') return { kind: 'enroll', publicKey: publicKey ?? null };
    const pending = store.getPendingDevice(deviceId);
    if (pending && pending.publicKey !== (publicKey ?? null)) {
      throw this.refuse(log, deviceId, 'pending-key-mismatch', errorCodes.deviceKeyRequired, 'another device with a different key already waits for approval under this id; an operator can drop that request with `cascade devices reset ID`');
    }
    const now = this.deps.clock();
    store.upsertPendingDevice(deviceId, request.labels, publicKey ?? null, now);
    if (!pending) log.info({ deviceId, key: publicKey ? keyFingerprint(publicKey) : null }, `device ${deviceId} waits for approval: cascade devices approve ${deviceId}`);
    return {
      kind: 'pending',
      answer: {
        deviceId,
        region: this.deps.region,
        status: 'pending',
        retryAfterSeconds: PENDING_RETRY_SECONDS,
        message: `device ${deviceId} waits for an operator: cascade devices approve ${deviceId}${publicKey ? ` (key ${keyFingerprint(publicKey)})` : ''}`,
      },
    };
  }

  /** After the token was issued: binds the key, and forgets the report order of the previous enrolment. */
  enrolled(deviceId: DeviceId, decision: EnrollmentDecision): void {
    if (decision.kind !== 'enroll') return;
    if (decision.publicKey !== null) this.deps.store.setDeviceKey(deviceId, decision.publicKey);
    this.deps.store.clearReportSeq(deviceId);
  }

  /** Checks a token renewal (`POST .../token`); throws an HttpError for a refusal. */
  checkRenewal(deviceId: DeviceId, existing: DeviceRecord | null, proof: KeyProof, log: FastifyBaseLogger): void {
    if (!existing) throw new HttpError(404, 'device-unknown', `no device ${deviceId} is enrolled in this region; enrol it`);
    if (existing.revoked) throw new HttpError(403, 'device-revoked', `device ${deviceId} was revoked and cannot enrol again with that id`);
    const bound = this.deps.store.getDeviceKey(deviceId);
    if (bound === null) {
      throw this.refuse(log, deviceId, 'key-unbound', 'device-key-unbound', 'this id is not bound to a key (enrolled without one, or reset): enrol it with the enrolment token');
    }
    if (!this.proofHolds(deviceId, bound, proof, 'renew-token')) {
      throw this.refuse(log, deviceId, 'proof-invalid', errorCodes.deviceKeyProofInvalid, 'the key proof does not verify against the key this id is bound to');
    }
  }

  /** `cascade devices approve ID`: the pending device becomes an enrolled one, bound to the key it asked with. */
  approve(deviceId: DeviceId, enroll: (labels: Labels) => void): boolean {
    const pending = this.deps.store.getPendingDevice(deviceId);
    if (!pending) return false;
    enroll(pending.labels);
    this.deps.store.setDeviceKey(deviceId, pending.publicKey);
    this.deps.store.deletePendingDevice(deviceId);
    return true;
  }
}
