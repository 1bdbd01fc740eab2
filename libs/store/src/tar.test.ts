import { describe, expect, it } from 'vitest';
import { BLOCK, entry, gnuLongName, header, paxEntry, paxRecord, tarOf } from '../test/tar-builder.ts';
import { MalformedTarError } from './errors.ts';
import { parseNumeric, parsePax, TarSplitter, type TarEntry } from './tar.ts';

const INLINE_MAX = 64;

/** Runs the splitter over `tar` cut into `chunk`-byte pieces and summarises the events. */
function split(tar: Uint8Array, chunk = tar.length): { entries: TarEntry[]; inline: Buffer; data: Buffer[] } {
  const s = new TarSplitter(INLINE_MAX);
  const entries: TarEntry[] = [];
  const inline: Buffer[] = [];
  const data: Buffer[] = [];
  let current: Buffer[] | undefined;
  for (let i = 0; i < tar.length; i += chunk) {
    for (const ev of s.push(tar.subarray(i, i + chunk))) {
      switch (ev.kind) {
        case 'inline':
          inline.push(Buffer.from(ev.bytes));
          break;
        case 'entry':
          entries.push(ev.entry);
          if (ev.entry.content === 'external') current = [];
          break;
        case 'data':
          current!.push(Buffer.from(ev.bytes));
          break;
        case 'data-end':
          data.push(Buffer.concat(current!));
          current = undefined;
          break;
      }
    }
  }
  s.finish();
  return { entries, inline: Buffer.concat(inline), data };
}

describe('parseNumeric', () => {
  const f = (s: string, width = 12): Buffer => {
    const b = Buffer.alloc(width);
    b.write(s, 'latin1');
    return b;
  };
  const base256 = (bytes: number[]): Buffer =>
    Buffer.from([0x80, ...Array<number>(11 - bytes.length).fill(0), ...bytes]);
  it.each([
    ['octal with NUL', f('00000001750\0'), 1000],
    ['octal with spaces', f('  1750 '), 1000],
    ['octal between NULs and spaces', f(' \0 755\0 '), 0o755],
    ['empty field', Buffer.alloc(12), 0],
    ['base-256', base256([0x02, 0x00, 0x00, 0x00, 0x00]), 2 ** 33],
  ])('%s', (_name, field, expected) => {
    expect(parseNumeric(field, 'size', 0)).toBe(expected);
  });
  it.each([
    ['a non-octal digit', f('00000001790')],
    ['a space between digits', f(' 12 34 ')],
    ['a negative base-256 value', Buffer.from([0xff, ...Array<number>(11).fill(0xff)])],
    ['a base-256 value above 2^53', base256([0x40, 0, 0, 0, 0, 0, 0, 0])],
  ])('rejects %s', (_name, field) => {
    expect(() => parseNumeric(field, 'size', 512)).toThrow(MalformedTarError);
  });
});

describe('parsePax', () => {
  it('reads path, linkpath and size and ignores other keys', () => {
    const data = Buffer.from(
      [
        '30 mtime=1700000000.123456789\n',
        paxRecord('path', 'über/ß'),
        '13 size=4096\n',
        paxRecord('linkpath', '../x'),
      ].join(''),
    );
    expect(paxRecord('path', 'über/ß')).toBe('17 path=über/ß\n');
    expect(parsePax(data, 0)).toEqual({ path: 'über/ß', linkpath: '../x', size: 4096 });
  });
  it.each([
    ['a length that overruns', '99 path=x\n'],
    ['a length that is not a number', 'x path=x\n'],
    ['a record without =', '9 pathx\n\n'],
    ['a size that is not a number', '14 size=12ab\n'],
  ])('rejects %s', (_name, text) => {
    expect(() => parsePax(Buffer.from(text), 1024)).toThrow(MalformedTarError);
  });
});

describe('TarSplitter', () => {
  const small = Buffer.from('hello\n');
  const big = Buffer.alloc(1000, 0x61);
  const tar = tarOf(
    entry({ name: 'small.txt', content: small }),
    entry({ name: 'big.bin', content: big }),
    paxEntry({ path: 'a/very/long/pax/name', size: String(big.length) }),
    header({ name: 'ignored', size: 0 }),
    Buffer.from(Buffer.concat([big, Buffer.alloc(24)])),
    gnuLongName('gnu/long/name'),
    entry({ name: 'short', content: big.subarray(0, 100) }),
    header({ name: 'hardlink-with-size', typeflag: '1', linkname: 'big.bin', size: 99999 }),
    header({ name: 'dev/sda', typeflag: '4', size: 0o77777777777, devmajor: 8 }),
    entry({ name: '../../etc/passwd', content: small }),
    entry({ name: 'empty', content: Buffer.alloc(0) }),
  );

  it('reports entries as Go archive/tar reads them', () => {
    const { entries } = split(tar);
    expect(
      entries
        .filter((e) => e.typeflag !== 'x' && e.typeflag !== 'L')
        .map((e) => [e.name, e.typeflag, e.size, e.content]),
    ).toEqual([
      ['small.txt', '0', 6, 'inline'],
      ['big.bin', '0', 1000, 'external'],
      ['a/very/long/pax/name', '0', 1000, 'external'],
      ['gnu/long/name', '0', 100, 'external'],
      ['hardlink-with-size', '1', 0, 'none'],
      ['dev/sda', '4', 0, 'none'],
      ['../../etc/passwd', '0', 6, 'inline'],
      ['empty', '0', 0, 'none'],
    ]);
  });

  it.each([1, 7, 511, 512, 513, 4096])('splits the same way in %i-byte chunks, losing no byte', (chunk) => {
    const whole = split(tar);
    const pieces = split(tar, chunk);
    expect(pieces.entries).toEqual(whole.entries);
    expect(pieces.inline.equals(whole.inline)).toBe(true);
    expect(pieces.data.map((d) => d.toString('hex'))).toEqual(whole.data.map((d) => d.toString('hex')));
    expect(whole.inline.length + whole.data.reduce((n, d) => n + d.length, 0)).toBe(tar.length);
    expect(whole.data.map((d) => d.length)).toEqual([1000, 1000, 100]);
  });

  it('keeps everything after the end marker inline, even garbage', () => {
    const withTrailer = Buffer.concat([
      tarOf(entry({ name: 'a', content: small })),
      Buffer.from('trailing bytes'),
    ]);
    const { inline, data } = split(withTrailer);
    expect(inline.length).toBe(withTrailer.length);
    expect(data).toEqual([]);
  });

  it('reads old GNU sparse extension blocks as headers', () => {
    const h = header({ name: 'sparse', typeflag: 'S', format: 'gnu', size: 600 });
    h[482] = 1; // isextended
    // Recompute the checksum after setting the flag.
    h.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    const ext = Buffer.alloc(BLOCK); // isextended = 0 at 504: last extension block
    const content = Buffer.alloc(600, 0x62);
    const t = tarOf(h, ext, content, Buffer.alloc(424));
    const { entries, data } = split(t);
    expect(entries.map((e) => [e.name, e.size])).toEqual([['sparse', 600]]);
    expect(data[0]!.equals(content)).toBe(true);
  });

  it.each([
    ['an empty stream', Buffer.alloc(0), /byte 0: empty stream/],
    ['a stream without end marker', entry({ name: 'a', content: small }), /missing end-of-archive marker/],
    ['a stream cut in a header', tar.subarray(0, 1100), /byte 1100: truncated in header/],
    [
      'a stream cut in content',
      Buffer.concat([header({ name: 'big', size: 5000 }), Buffer.alloc(100)]),
      /truncated in content of entry "big"/,
    ],
    [
      'a stream cut in padding',
      Buffer.concat([header({ name: 'a', size: 6 }), small]),
      /truncated in padding/,
    ],
  ])('rejects %s at the end', (_name, bytes, message) => {
    const s = new TarSplitter(INLINE_MAX);
    for (const _ of s.push(bytes)) {
      /* consume */
    }
    expect(() => s.finish()).toThrow(message);
  });

  it.each([
    { delta: -512, ok: true },
    { delta: 0, ok: true },
    { delta: -511, ok: false },
  ])(
    'accepts a checksum summed over signed bytes as historic tars wrote it (delta $delta)',
    ({ delta, ok }) => {
      // 'é' is two bytes >= 0x80 in UTF-8: the signed sum is 2 x 256 below the unsigned one.
      const bytes = tarOf(entry({ name: 'caf\u00e9', content: small, checksumDelta: delta }));
      if (ok) expect(split(bytes).entries.map((e) => e.name)).toEqual(['caf\u00e9']);
      else expect(() => split(bytes)).toThrow(/header checksum mismatch/);
    },
  );

  it.each([
    [
      'a bad checksum',
      tarOf(entry({ name: 'a', content: small, checksumDelta: 1 })),
      /byte 0: header checksum mismatch/,
    ],
    [
      'a PAX header over 1 MiB',
      tarOf(header({ name: 'p', typeflag: 'x', size: 2 * 1024 * 1024 })),
      /exceeds 1048576/,
    ],
    [
      'a malformed PAX record',
      tarOf(entry({ name: 'p', typeflag: 'x', content: Buffer.from('5 x\n') }), header({ name: 'a' })),
      /PAX record/,
    ],
  ])('rejects %s while splitting', (_name, bytes, message) => {
    expect(() => split(bytes)).toThrow(message);
  });

  it('takes external content out of band for splitstream walks', () => {
    const t = tarOf(entry({ name: 'big', content: big }), entry({ name: 'next', content: small }));
    const s = new TarSplitter(INLINE_MAX);
    const names: string[] = [];
    const walk = (bytes: Uint8Array): void => {
      for (const ev of s.push(bytes)) if (ev.kind === 'entry') names.push(ev.entry.name);
    };
    walk(t.subarray(0, BLOCK));
    expect(s.expectsExternal).toBe(true);
    expect(() => s.skipExternal(999)).toThrow(MalformedTarError);
    s.skipExternal(1000);
    walk(t.subarray(BLOCK + 1000));
    s.finish();
    expect(names).toEqual(['big', 'next']);
  });
});
