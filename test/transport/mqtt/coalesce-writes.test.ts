import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { coalesceWrites } from '../../../src/region/mqtt/coalesce-writes.js';

describe('coalesceWrites', () => {
  it('sends what a corked socket buffered as one write, bytes in order, strings and buffers mixed', async () => {
    const received: Buffer[] = [];
    let ended!: () => void;
    const done = new Promise<void>((resolve) => (ended = resolve));
    const server = createServer((peer) => {
      peer.on('data', (chunk: Buffer) => received.push(chunk));
      peer.on('end', ended);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const socket: Socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    coalesceWrites(socket);
    coalesceWrites(socket);
    const writes = { single: 0 };
    const write = socket._write.bind(socket);
    socket._write = (chunk, encoding, callback) => {
      writes.single++;
      write(chunk, encoding, callback);
    };
    const expected: Buffer[] = [];
    socket.cork();
    for (let i = 0; i < 20_000; i++) {
      const text = `message ${i} é;`;
      if (i % 2) socket.write(text, 'utf8');
      else socket.write(Buffer.from(text));
      expected.push(Buffer.from(text));
    }
    socket.uncork();
    socket.end();
    await done;
    server.close();
    expect(Buffer.concat(received).equals(Buffer.concat(expected))).toBe(true);
    expect(writes.single).toBe(1);
  });
});
