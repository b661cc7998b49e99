import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FleetLoader } from '../../src/desired/load.js';
import { isCronExpression, isTimeZone, validateDocument } from '../../src/desired/schemas.js';
import { readWorktreeSnapshot } from '../../src/source/worktree-snapshot.js';
import { gitBlobId } from '../../src/source/snapshot.js';

const FIXTURES = new URL('../fixtures/fleets/', import.meta.url);
const INVALID = new URL('invalid/', FIXTURES);
const expected = JSON.parse(readFileSync(new URL('expected.json', INVALID), 'utf8')) as Record<string, string[]>;
const invalidFiles = readdirSync(INVALID).filter((f) => f.endsWith('.yaml')).sort();

describe('fleet document schemas', () => {
  it('accept the valid fixture fleet: every kind, every optional field', async () => {
    const snapshot = await readWorktreeSnapshot(new URL('valid/', FIXTURES).pathname);
    const { fleet, problems } = await new FleetLoader().load(snapshot);
    expect(problems).toEqual([]);
    expect([...fleet.apps.keys()].sort()).toEqual(['camera', 'log-shipper', 'metrics', 'sensor-agent']);
    expect(fleet.deployments.size).toBe(7);
    expect([...fleet.regions.keys()].sort()).toEqual(['ap-south', 'eu-west', 'sa-east', 'us-east']);
    expect(fleet.fleet?.metadata.name).toBe('acme-edge');
  });

  it('has an expectation for every invalid fixture', () => {
    expect(Object.keys(expected).sort()).toEqual(invalidFiles);
  });

  // Each invalid fixture is loaded beside the valid fleet, so references resolve and only its own faults show.
  it.each(invalidFiles)('report exactly the expected problems in invalid/%s', async (name) => {
    const base = await readWorktreeSnapshot(new URL('valid/', FIXTURES).pathname);
    const bytes = new Uint8Array(readFileSync(new URL(name, INVALID)));
    const path = `invalid/${name}`;
    const files = [...base.files, { path, id: gitBlobId(bytes), size: bytes.byteLength, read: async () => bytes }];
    const { problems, fleet } = await new FleetLoader().load({ revision: null, files });
    const shown = problems.map((p) => `${p.code} ${p.path.replaceAll(path, '@')}:${p.line}:${p.col}: ${p.message.replaceAll(path, '@')}`);
    expect(shown).toEqual(expected[name]);
    for (const source of fleet.sources.values()) {
      expect(problems.some((p) => p.path === source.path && p.index === source.index)).toBe(false);
    }
  });

  it('check apiVersion and kind before choosing a schema', () => {
    expect(validateDocument({ apiVersion: 'cascade/v2', kind: 'App' })[0]).toMatchObject({ code: 'api-version', pointer: '/apiVersion' });
    expect(validateDocument({ apiVersion: 'cascade/v1' })[0]).toMatchObject({ code: 'unknown-kind', pointer: '' });
  });

  it('report every violation of a document, not just the first', () => {
    const issues = validateDocument({
      apiVersion: 'cascade/v1',
      kind: 'Deployment',
      metadata: { name: 'x', extra: 1 },
      spec: { app: 'a', version: 'v', priority: 1.5, rollout: { minSample: 0 } },
    });
    expect(issues.map((i) => i.pointer).sort()).toEqual(['/metadata/extra', '/spec/priority', '/spec/rollout/minSample']);
  });

  it('requires a spec for Deployments only', () => {
    for (const kind of ['App', 'Region', 'Fleet']) {
      expect(validateDocument({ apiVersion: 'cascade/v1', kind, metadata: { name: 'n' } })).toEqual([]);
    }
    expect(validateDocument({ apiVersion: 'cascade/v1', kind: 'Deployment', metadata: { name: 'n' } })[0]?.message).toContain('"spec"');
  });

  it('validate cron expressions as five fields', () => {
    expect(isCronExpression('0 2 * * *')).toBe(true);
    expect(isCronExpression('*/15 9-17 * * MON-FRI')).toBe(true);
    expect(isCronExpression('0 2 * *')).toBe(false);
    expect(isCronExpression('0 0 2 * * *')).toBe(false);
    expect(isCronExpression('@daily')).toBe(false);
    expect(isCronExpression('61 * * * *')).toBe(false);
  });

  it('validate time zones against the IANA database', () => {
    expect(isTimeZone('Europe/Berlin')).toBe(true);
    expect(isTimeZone('UTC')).toBe(true);
    expect(isTimeZone('Mars/Olympus_Mons')).toBe(false);
    expect(isTimeZone('')).toBe(false);
  });
});
