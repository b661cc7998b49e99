import { Counter, type Registry } from 'prom-client';

/** Prometheus counters of the region's MQTT transport, on the region's registry. */
export interface MqttMetrics {
  published: Counter;
  reports: Counter<'outcome'>;
  presence: Counter<'status'>;
  moves: Counter;
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
      help: 'Reports that arrived over MQTT, by outcome: recorded, invalid, identity-mismatch (payload names another device than the topic), unknown-device, out-of-order (a redelivery or a report overtaken by a newer one)',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    presence: new Counter({
      name: 'cascade_mqtt_presence_messages_total',
      help: "Devices' presence messages (their retained status topic: online, or offline from their will) that reached the region; a steady rate with nothing changing means devices reconnecting",
      labelNames: ['status'],
      registers: [registry],
    }),
    moves: new Counter({
      name: 'cascade_mqtt_device_moves_total',
      help: "Devices that turned up at another location (a site's prefix, or the device topics): their desired state was published there, and cleared where they were once gone from there",
      registers: [registry],
    }),
  };
}
