import type { Duplex } from 'node:stream';

type WritevChunk = { chunk: Buffer | string; encoding: BufferEncoding };
type WritableInternals = Duplex & {
  _writev?: (chunks: WritevChunk[], callback: (err?: Error | null) => void) => void;
  _write: (chunk: Buffer, encoding: BufferEncoding, callback: (err?: Error | null) => void) => void;
};

const COALESCED = Symbol('cascade.coalescedWrites');

/**
 * Makes a socket hand the chunks it buffered while corked to the kernel as one buffer.
 *
 * MQTT.js writes each publish as five or six small chunks (header, length, topic, id, properties,
 * payload) and mqtt-packet corks the socket until the next tick, so a batch of 10,000 publishes is
 * one `writev` of some 60,000 pieces. libuv passes at most 1,024 pieces (IOV_MAX) to the kernel per
 * event-loop turn, so that batch would leave in about 60 turns; in a region whose event loop is busy
 * taking the reports the first devices already send back, each turn is long and the push crawls.
 * One buffer leaves as fast as the kernel takes it.
 */
export function coalesceWrites(stream: Duplex): void {
  const socket = stream as WritableInternals & { [COALESCED]?: true };
  if (socket[COALESCED] || typeof socket._writev !== 'function' || typeof socket._write !== 'function') return;
  socket[COALESCED] = true;
  socket._writev = function (this: WritableInternals, chunks, callback) {
    const buffers = chunks.map(({ chunk, encoding }) => (typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk));
    this._write(Buffer.concat(buffers), 'buffer' as BufferEncoding, callback);
  };
}

const ACKS_HELD = Symbol('cascade.acknowledgementsHeld');

/**
 * Makes what a client writes while it handles one read of its socket leave together, after it.
 *
 * MQTT.js answers each QoS 1 message it receives with a PUBACK, as soon as it handled it, and
 * mqtt-packet uncorks the socket on the next tick, between two messages of the same read: each PUBACK
 * was a write of its own. A region taking 50,000 reports of a rollout made 50,000 writes of 4 bytes, a
 * tenth of its busy time in a 25,000-device rollout (CPU profile: the native write under
 * Socket._writeGeneric), and as many reads for the broker. Here the socket is corked when a read
 * arrives and uncorked once the event loop moves on (setImmediate, after every tick of handling it):
 * the read's acknowledgements leave in one write (with coalesceWrites, one buffer), a turn later at most.
 */
export function holdWritesPerRead(stream: Duplex): void {
  const socket = stream as Duplex & { [ACKS_HELD]?: true };
  if (socket[ACKS_HELD]) return;
  socket[ACKS_HELD] = true;
  let held = false;
  socket.prependListener('data', () => {
    if (held || socket.destroyed) return;
    held = true;
    socket.cork();
    setImmediate(() => {
      held = false;
      socket.uncork();
    });
  });
}
