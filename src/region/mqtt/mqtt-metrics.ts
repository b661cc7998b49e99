import { Counter, type Registry } from 'prom-client';

/** Prometheus counters of the region's MQTT transport, on the region's registry. */
export interface MqttMetrics {
  published: Counter;
  reports: Counter<'outcome'>;
}

export function createMqttMetrics(registry: Registry): MqttMetrics {
  return {
    published: new Counter({
      name: 'cascade_mqtt_desired_published_total',
      help: 'Desired-state messages the region published over MQTT (retained, QoS 1), one per device whose desired state changed',
      registers: [registry],
    }),
    reports: new Counter({
      name: 'cascade_mqtt_reports_total',
      help: 'Reports that arrived over MQTT, by outcome: recorded, invalid, identity-mismatch (payload names another device than the topic), unknown-device',
      labelNames: ['outcome'],
      registers: [registry],
    }),
  };
}
