import { createServer } from 'node:net';

/** Every server of the stack listens on the loopback interface only. */
export const LOOPBACK = '127.0.0.1';

/**
 * How many times a child server is restarted on a new port when the one it was given was taken
 * between {@link freePort} and the child's own bind (another process won the race).
 */
const ADDRESS_IN_USE_ATTEMPTS = 5;

/** A child server could not bind the port it was given: retry on another one. */
export class AddressInUseError extends Error {
  override readonly name = 'AddressInUseError';
}

/**
 * A port that was free a moment ago: binds port 0 on 127.0.0.1, reads what the kernel chose, and
 * closes. Only for servers that must be told their port on the command line (Redis, the registry);
 * in-process servers listen on port 0 directly. Pair with {@link retryOnAddressInUse}.
 */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: LOOPBACK, port: 0, exclusive: true }, resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
  if (address === null || typeof address === 'string') throw new Error('freePort: no TCP address');
  return address.port;
}

/**
 * Starts a server on a fresh free port, and again on another one while it fails with
 * {@link AddressInUseError}.
 */
export async function retryOnAddressInUse<T>(what: string, start: (port: number) => Promise<T>): Promise<T> {
  let last: unknown;
  for (let attempt = 1; attempt <= ADDRESS_IN_USE_ATTEMPTS; attempt++) {
    try {
      return await start(await freePort());
    } catch (err) {
      if (!(err instanceof AddressInUseError)) throw err;
      last = err;
    }
  }
  throw new Error(`${what}: no free port after ${ADDRESS_IN_USE_ATTEMPTS} attempts`, { cause: last });
}
