import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { pack } from 'tar-stream';
import {
  checkMemberName,
  MEMBER_MODE,
  MEMBER_MTIME,
  memberBytes,
  memberHeader,
  memberPadding,
  tarSize,
} from './tar-layout.ts';

async function packed(members: readonly { name: string; size: number }[]): Promise<number> {
  const p = pack();
  for (const m of members) p.entry({ name: m.name, size: m.size, mtime: new Date(0) }, Buffer.alloc(m.size));
  p.finalize();
  let total = 0;
  for await (const chunk of Readable.from(p)) total += (chunk as Buffer).length;
  return total;
}

describe('tar layout', () => {
  it.each([
    [0, 512],
    [1, 1024],
    [511, 1024],
    [512, 1024],
    [513, 1536],
    [10 * 1024 * 1024 + 7, 512 + 10 * 1024 * 1024 + 512],
  ])('a member of %i bytes takes %i', (size, bytes) => {
    expect(memberBytes(size)).toBe(bytes);
  });

  it.each([
    [[], 1024],
    [[{ name: 'oci-layout', size: 30 }], 2048],
    [
      [
        { name: `blobs/sha256/${'a'.repeat(64)}`, size: 100_000 },
        { name: 'manifest.json', size: 0 },
        { name: `${'b'.repeat(64)}.tar.zst`, size: 1536 },
      ],
      1024 + 512 + 100_352 + 512 + 512 + 1536,
    ],
  ])('%j is %i bytes, as tar-stream packs it', async (members, size) => {
    expect(tarSize(members)).toBe(size);
    expect(await packed(members)).toBe(size);
  });

  it.each([['x'.repeat(101)], ['with space'], ['ünïcode'], ['']])('refuses the member name %j', (name) => {
    expect(() => checkMemberName(name)).toThrow(
      new Error(`tar member name "${name}" is not printable ASCII of at most 100 bytes`),
    );
  });

  /** The header tar-stream's pack writes for an entry as the writer makes them. */
  async function tarStreamHeader(name: string, size: number): Promise<Buffer> {
    const p = pack();
    const sink = p.entry({
      name,
      size,
      mode: MEMBER_MODE,
      mtime: MEMBER_MTIME,
      uid: 0,
      gid: 0,
      type: 'file',
    });
    sink.on('error', () => undefined);
    const parts: Buffer[] = [];
    for await (const chunk of Readable.from(p)) {
      parts.push(chunk as Buffer);
      if (Buffer.concat(parts).length >= 512) break;
    }
    p.destroy();
    return Buffer.concat(parts).subarray(0, 512);
  }

  it.each([
    ['manifest.json', 0],
    ['oci-layout', 30],
    [`blobs/sha256/${'a'.repeat(64)}`, 513],
    [`${'b'.repeat(64)}/layer.tar`, 8 ** 11 - 1], // the largest octal size
    [`${'c'.repeat(64)}/layer.tar`, 8 ** 11], // base-256 from here (8 GiB)
    ['x'.repeat(100), 123_456_789_012],
  ])('writes the header of %s (%i bytes) as tar-stream does', async (name, size) => {
    expect(memberHeader(name, size).equals(await tarStreamHeader(name, size))).toBe(true);
  });

  it.each([
    [0, 0],
    [1, 511],
    [511, 1],
    [512, 0],
    [1025, 511],
  ])('pads %i bytes of content with %i', (size, pad) => {
    expect(memberPadding(size)).toEqual(Buffer.alloc(pad));
  });
});
