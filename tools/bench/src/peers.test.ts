import { describe, expect, it } from 'vitest';
import { chooseSnapshotter, parseSnapshotters } from './peers.ts';

const PLUGINS_LS = `TYPE                            ID                       PLATFORMS      STATUS
io.containerd.content.v1        content                  -              ok
io.containerd.snapshotter.v1    aufs                     linux/amd64    skip
io.containerd.snapshotter.v1    native                   linux/amd64    ok
io.containerd.snapshotter.v1    overlayfs                linux/amd64    ok
io.containerd.snapshotter.v1    devmapper                linux/amd64    error
io.containerd.service.v1        snapshots-service        -              ok
`;

describe('snapshotter choice', () => {
  it('reads the snapshotters and their status from ctr plugins ls', () => {
    expect([...parseSnapshotters(PLUGINS_LS)]).toEqual([
      ['aufs', 'skip'],
      ['native', 'ok'],
      ['overlayfs', 'ok'],
      ['devmapper', 'error'],
    ]);
  });

  it.each([
    {
      statuses: [
        ['overlayfs', 'ok'],
        ['native', 'ok'],
      ],
      chosen: 'overlayfs',
    },
    {
      statuses: [
        ['overlayfs', 'skip'],
        ['native', 'ok'],
      ],
      chosen: 'native',
    },
    { statuses: [['overlayfs', 'error']], chosen: 'native' },
    { statuses: [], chosen: 'native' },
  ] as const)('$statuses -> $chosen', ({ statuses, chosen }) => {
    expect(chooseSnapshotter(new Map(statuses))).toBe(chosen);
  });
});
