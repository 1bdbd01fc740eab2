import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { AddressInUseError, freePort, LOOPBACK, retryOnAddressInUse } from './ports.ts';

describe('freePort', () => {
  it('returns a port that can be bound on 127.0.0.1', async () => {
    const port = await freePort();
    const server = createServer();
    await new Promise<void>((resolve) => server.listen({ host: LOOPBACK, port }, resolve));
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
});

describe('retryOnAddressInUse', () => {
  it.each([
    ['succeeds first time', 0, 1],
    ['retries on AddressInUseError with another port', 2, 3],
    ['gives the fifth attempt its chance', 4, 5],
  ])('%s', async (_name, failures, calls) => {
    const ports: number[] = [];
    const result = await retryOnAddressInUse('thing', (port) => {
      ports.push(port);
      if (ports.length <= failures) return Promise.reject(new AddressInUseError(`port ${port} taken`));
      return Promise.resolve(port);
    });
    expect(ports).toHaveLength(calls);
    expect(result).toBe(ports.at(-1));
  });

  it('gives up after five attempts, naming the server', async () => {
    let calls = 0;
    const failing = retryOnAddressInUse('thing', (port) => {
      calls++;
      return Promise.reject(new AddressInUseError(`port ${port} taken`));
    });
    await expect(failing).rejects.toThrow('thing: no free port after 5 attempts');
    expect(calls).toBe(5);
  });

  it('does not retry other errors', async () => {
    let calls = 0;
    const failing = retryOnAddressInUse('thing', () => {
      calls++;
      return Promise.reject(new Error('config broken'));
    });
    await expect(failing).rejects.toThrow('config broken');
    expect(calls).toBe(1);
  });
});
