/**
 * A private containerd for the benchmarks that run it next to stevedore (tools/bench's pull, the
 * export benchmark): its configuration, with everything under one directory.
 */
import { join } from 'node:path';

/**
 * A containerd config with root, state and both sockets under `dir` (socket paths must stay under
 * 108 bytes: keep `dir` short) and the Kubernetes CRI plugin off (it would start networking and
 * sandbox plugins that pulls and exports do not need).
 */
export function containerdConfig(dir: string): string {
  return [
    'version = 2',
    `root = ${JSON.stringify(join(dir, 'root'))}`,
    `state = ${JSON.stringify(join(dir, 'state'))}`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]',
    `  address = ${JSON.stringify(join(dir, 'c.sock'))}`,
    '[ttrpc]',
    `  address = ${JSON.stringify(join(dir, 'c.ttrpc.sock'))}`,
    '',
  ].join('\n');
}
