/**
 * Validates a device report that did not come through the HTTP server (whose route schema checks
 * it there): the same JSON Schema (schemas.ts) and label rules (validate.ts), compiled once with ajv.
 */
import AjvModule from 'ajv';
import type { ErrorObject, ValidateFunction } from 'ajv';
import type { MqttReport } from './mqtt-topics.js';
import { reportRequestSchema } from './schemas.js';
import { labelsProblem } from './validate.js';

/** The MQTT report: the HTTP report body plus `deviceId`. */
export const mqttReportSchema = {
  ...reportRequestSchema,
  required: ['deviceId', 'apps'],
  properties: {
    ...reportRequestSchema.properties,
    deviceId: { type: 'string', minLength: 1, maxLength: 128 },
  },
} as const;

export type ReportCheck = { ok: true; report: MqttReport } | { ok: false; problem: string };

let compiled: ValidateFunction | undefined;

function validator(): ValidateFunction {
  if (!compiled) {
    // ajv ships CommonJS with `exports.default`; NodeNext sees the module object as the default import.
    type AjvClass = typeof AjvModule.default;
    const Ajv = ((AjvModule as unknown as { default?: AjvClass }).default ?? AjvModule) as AjvClass;
    compiled = new Ajv({ allErrors: false, allowUnionTypes: true }).compile(mqttReportSchema);
  }
  return compiled;
}

/** Says which field is wrong and how, e.g. `report/apps/web: unknown field 'colour'`. */
function describe(errors: ErrorObject[] | null | undefined): string {
  const first = errors?.[0];
  if (!first) return 'report is invalid';
  const where = `report${first.instancePath}`;
  const params = first.params as Record<string, unknown>;
  if (first.keyword === 'additionalProperties') return `${where}: unknown field '${String(params['additionalProperty'])}'`;
  if (first.keyword === 'required') return `${where}: missing required field '${String(params['missingProperty'])}'`;
  if (first.keyword === 'enum' && Array.isArray(params['allowedValues'])) {
    return `${where} must be one of ${params['allowedValues'].map((value) => `'${String(value)}'`).join(', ')}`;
  }
  return `${where} ${first.message ?? 'is invalid'}`;
}

/** Checks a parsed MQTT report: its shape, then its labels. */
export function checkMqttReport(value: unknown): ReportCheck {
  const validate = validator();
  if (!validate(value)) return { ok: false, problem: describe(validate.errors) };
  const report = value as MqttReport;
  if (report.labels !== undefined) {
    const problem = labelsProblem(report.labels);
    if (problem) return { ok: false, problem: `report/labels: ${problem}` };
  }
  return { ok: true, report };
}

/** Parses and checks the payload of a `.../reported` message. */
export function parseMqttReport(payload: Buffer | string): ReportCheck {
  let value: unknown;
  try {
    value = JSON.parse(typeof payload === 'string' ? payload : payload.toString('utf8'));
  } catch {
    return { ok: false, problem: 'report is not valid JSON' };
  }
  return checkMqttReport(value);
}
