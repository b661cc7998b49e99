import { describe, expect, it } from 'vitest';
import { DIRECT, desiredTopic, deviceAtTopic, mqttTopicAt, regionSitesSubscription, regionSubscription, regionSyncTopic, reportedTopic, topicLevelProblem } from '../../../src/protocol/mqtt-topics.js';

const deviceOfTopic = (topic: string, region: string, kind: 'desired' | 'reported' | 'status') => deviceAtTopic(topic, region, kind)?.device ?? null;
import { parseMqttReport } from '../../../src/protocol/report-validator.js';

describe('MQTT topics', () => {
  it('names each device\'s two topics and reads the device back', () => {
    expect(desiredTopic('eu-west', 'dev-1')).toBe('cascade/eu-west/dev-1/desired');
    expect(reportedTopic('eu-west', 'site:4.cam')).toBe('cascade/eu-west/site:4.cam/reported');
    expect(regionSubscription('eu-west', 'reported')).toBe('cascade/eu-west/+/reported');
    expect(deviceOfTopic('cascade/eu-west/dev-1/reported', 'eu-west', 'reported')).toBe('dev-1');
    expect(deviceOfTopic('cascade/eu-west/dev-1/desired', 'eu-west', 'reported')).toBeNull();
    expect(deviceOfTopic('cascade/us-east/dev-1/reported', 'eu-west', 'reported')).toBeNull();
    expect(deviceOfTopic('cascade/eu-west/a/b/reported', 'eu-west', 'reported')).toBeNull();
    // The sync marker cannot be any device's topic, nor match the region's subscriptions.
    expect(regionSyncTopic('eu-west')).toBe('cascade/eu-west/$sync');
    expect(deviceOfTopic(regionSyncTopic('eu-west'), 'eu-west', 'desired')).toBeNull();
  });

  it("names a device's topics under a site's prefix and reads device and site back; nothing else is a site topic", () => {
    expect(mqttTopicAt('eu-west', 'site-a', 'dev-1', 'desired')).toBe('cascade/eu-west/sites/site-a/dev-1/desired');
    expect(mqttTopicAt('eu-west', DIRECT, 'dev-1', 'desired')).toBe(desiredTopic('eu-west', 'dev-1'));
    expect(regionSitesSubscription('eu-west', 'reported')).toBe('cascade/eu-west/sites/+/+/reported');
    expect(deviceAtTopic('cascade/eu-west/sites/site-a/dev-1/reported', 'eu-west', 'reported')).toEqual({ device: 'dev-1', location: 'site-a' });
    expect(deviceAtTopic('cascade/eu-west/dev-1/reported', 'eu-west', 'reported')).toEqual({ device: 'dev-1', location: DIRECT });
    // A device named like the sites level is a device, with its own four-level topics.
    expect(deviceAtTopic('cascade/eu-west/sites/status', 'eu-west', 'status')).toEqual({ device: 'sites', location: DIRECT });
    for (const topic of [
      'cascade/eu-west/sites//dev-1/status', // empty site
      'cascade/eu-west/sites/site-a//status', // empty device
      'cascade/eu-west/site/site-a/dev-1/status', // not the sites level
      'cascade/eu-west/sites/site-a/x/dev-1/status', // a level too many
      'cascade/eu-west/sites/site-a/status', // two levels: neither a device's nor a site's
      'cascade/eu-west/sites/$site/dev-1/status', // a site the region could not publish to
      `cascade/eu-west/sites/${'s'.repeat(1025)}/dev-1/status`,
      'cascade/eu-west//status',
      'cascade/eu-west/status',
    ]) {
      expect(deviceAtTopic(topic, 'eu-west', 'status'), topic).toBeNull();
    }
    expect(() => mqttTopicAt('eu-west', 'site/a', 'dev-1', 'desired')).toThrow(/site 'site\/a' contains/);
    expect(() => mqttTopicAt('eu-west', '$SYS', 'dev-1', 'desired')).toThrow(/reserves/);
  });

  it('refuses names MQTT cannot carry in one topic level', () => {
    expect(topicLevelProblem('eu/west')).toMatch(/'\/', '\+', '#'/);
    expect(topicLevelProblem('#')).not.toBeNull();
    expect(topicLevelProblem('$SYS')).toMatch(/reserves/);
    expect(topicLevelProblem('')).toBe('is empty');
    expect(() => desiredTopic('eu+west', 'dev-1')).toThrow(/region 'eu\+west' contains/);
  });
});

describe('parseMqttReport', () => {
  it('takes the HTTP report body plus deviceId, checked by the same schema', () => {
    expect(parseMqttReport(JSON.stringify({ deviceId: 'dev-1', apps: { web: { version: null, state: 'failed', message: 'no space' } }, labels: { ring: 'beta' } }))).toEqual({
      ok: true,
      report: { deviceId: 'dev-1', apps: { web: { version: null, state: 'failed', message: 'no space' } }, labels: { ring: 'beta' } },
    });
  });

  it('says what is wrong', () => {
    const problem = (payload: unknown) => {
      const check = parseMqttReport(typeof payload === 'string' ? payload : JSON.stringify(payload));
      return check.ok ? null : check.problem;
    };
    expect(problem('{"deviceId":')).toBe('report is not valid JSON');
    expect(problem({ apps: {} })).toBe("report: missing required field 'deviceId'");
    expect(problem({ deviceId: 'd', apps: {}, colour: 'red' })).toBe("report: unknown field 'colour'");
    expect(problem({ deviceId: 'd', apps: { web: { version: '1', state: 'asleep' } } })).toBe("report/apps/web/state must be one of 'installing', 'healthy', 'failed'");
    expect(problem({ deviceId: 'd', apps: {}, labels: { 'no spaces': 'x' } })).toMatch(/^report\/labels: label key 'no spaces'/);
  });
});
