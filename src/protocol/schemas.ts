/**
 * JSON Schemas of the request bodies, so the region rejects a wrong shape before it touches state.
 * Labels are only shape-checked here; their key/value rules are in validate.ts, which names the bad label.
 */
import { MAX_LABELS, MAX_REPORT_SEQ } from './types.js';

const APP_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$';

const labelsSchema = {
  type: 'object',
  maxProperties: MAX_LABELS,
  additionalProperties: { type: 'string', maxLength: 63 },
} as const;

const keyProofSchema = {
  type: 'object',
  required: ['nonce', 'signature'],
  additionalProperties: false,
  properties: {
    nonce: { type: 'string', minLength: 16, maxLength: 128, pattern: '^[A-Za-z0-9_-]+$' },
    signature: { type: 'string', minLength: 1, maxLength: 256, pattern: '^[A-Za-z0-9+/=]+$' },
  },
} as const;

export const enrollRequestSchema = {
  type: 'object',
  required: ['deviceId', 'labels'],
  additionalProperties: false,
  properties: {
    deviceId: { type: 'string', minLength: 1, maxLength: 128 },
    labels: labelsSchema,
    enrollmentToken: { type: 'string', maxLength: 1024 },
    publicKey: { type: 'string', minLength: 1, maxLength: 512, pattern: '^[A-Za-z0-9+/=]+$' },
    proof: keyProofSchema,
  },
} as const;

export const renewTokenRequestSchema = {
  type: 'object',
  required: ['proof'],
  additionalProperties: false,
  properties: { proof: keyProofSchema },
} as const;

export const appReportSchema = {
  type: 'object',
  required: ['version', 'state'],
  additionalProperties: false,
  properties: {
    version: { type: ['string', 'null'], minLength: 1, maxLength: 128 },
    state: { type: 'string', enum: ['installing', 'healthy', 'failed'] },
    message: { type: 'string', maxLength: 4096 },
    attempt: { type: 'integer', minimum: 0, maximum: 1_000_000 },
  },
} as const;

export const reportRequestSchema = {
  type: 'object',
  required: ['apps'],
  additionalProperties: false,
  properties: {
    apps: {
      type: 'object',
      maxProperties: 256,
      propertyNames: { pattern: APP_NAME_PATTERN },
      additionalProperties: appReportSchema,
    },
    labels: labelsSchema,
    /** Monotonic per device, see ReportRequest.seq. */
    seq: { type: 'integer', minimum: 1, maximum: MAX_REPORT_SEQ },
  },
} as const;

export const desiredQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    wait: { type: 'string', pattern: '^[0-9]{1,6}$' },
  },
} as const;

export const deviceParamsSchema = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string' } },
} as const;
