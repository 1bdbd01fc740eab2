import { describe, expect, it } from 'vitest';
import { containerdConfig } from './containerd.ts';

describe('containerdConfig', () => {
  it('puts root, state and both sockets under the directory and turns CRI off', () => {
    expect(containerdConfig('/tmp/sb-ctrd-x')).toBe(
      [
        'version = 2',
        'root = "/tmp/sb-ctrd-x/root"',
        'state = "/tmp/sb-ctrd-x/state"',
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        '[grpc]',
        '  address = "/tmp/sb-ctrd-x/c.sock"',
        '[ttrpc]',
        '  address = "/tmp/sb-ctrd-x/c.ttrpc.sock"',
        '',
      ].join('\n'),
    );
  });
});
