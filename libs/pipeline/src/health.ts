/**
 * The probe endpoint of a service: `/healthz` answers 200 while the process runs (liveness);
 * `/readyz` answers 200 only when every readiness check passes (Redis and the store reachable),
 * else 503 with the failing checks named.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export type ReadinessCheck = () => Promise<void>;

export interface HealthServer {
  readonly port: number;
  close(): Promise<void>;
}

export async function startHealthServer(
  port: number,
  checks: Readonly<Record<string, ReadinessCheck>>,
  host = '0.0.0.0',
): Promise<HealthServer> {
  let closing = false;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') {
      res.writeHead(closing ? 503 : 200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: closing ? 'stopping' : 'ok' }));
      return;
    }
    if (path === '/readyz') {
      void runChecks(checks).then((failed) => {
        const ready = !closing && Object.keys(failed).length === 0;
        res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ status: ready ? 'ready' : 'not ready', failed }));
      });
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: `no such endpoint ${path}` }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    async close() {
      closing = true;
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Runs every check; returns the failing ones with their error messages. */
async function runChecks(checks: Readonly<Record<string, ReadinessCheck>>): Promise<Record<string, string>> {
  const failed: Record<string, string> = {};
  await Promise.all(
    Object.entries(checks).map(async ([name, check]) => {
      try {
        await check();
      } catch (err) {
        failed[name] = err instanceof Error ? err.message : String(err);
      }
    }),
  );
  return failed;
}
