import { describe, expect, it } from 'vitest';
import type { DeviceDesired } from '../../src/core/types.js';
import { computeHandOut } from '../../src/plan/hand-out.js';

const want = (version: string, deployment = 'web'): DeviceDesired => ({ web: { version, deployment } });

describe('computeHandOut', () => {
  it('hands nothing to devices that were already handed their desired state', () => {
    const resolved = new Map([['d1', want('2.0')]]);
    const changes = computeHandOut({ resolved, handed: new Map([['d1', want('2.0')]]), installed: new Map() });
    expect(changes.size).toBe(0);
  });

  it('hands the new version to devices whose desired state changed', () => {
    const resolved = new Map([['d1', want('2.0')], ['d2', want('2.0')]]);
    const handed = new Map([['d1', want('1.0')], ['d2', want('2.0')]]);
    const changes = computeHandOut({ resolved, handed, installed: new Map() });
    expect([...changes.keys()]).toEqual(['d1']);
    expect(changes.get('d1')).toEqual(want('2.0'));
  });

  it('keeps a held-back device on what it was handed, or on what it runs', () => {
    const resolved = new Map([['d1', want('2.0')], ['d2', want('2.0')], ['d3', want('2.0')]]);
    const handed = new Map([['d1', want('1.0')]]);
    const installed = new Map([['d2', { web: '1.5' }]]);
    const changes = computeHandOut({ resolved, handed, installed, released: () => false });
    expect(changes.has('d1')).toBe(false);
    expect(changes.get('d2')).toEqual(want('1.5'));
    expect(changes.has('d3')).toBe(false); // nothing handed, nothing installed: nothing to hand yet
  });

  it('drops an app no Deployment selects anymore', () => {
    const handed = new Map([['d1', { ...want('1.0'), db: { version: '3', deployment: 'db' } }]]);
    const changes = computeHandOut({ resolved: new Map([['d1', want('1.0')]]), handed, installed: new Map() });
    expect(changes.get('d1')).toEqual(want('1.0'));
  });
});
