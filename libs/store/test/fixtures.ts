/**
 * Layer tars for the store suite: from tar-stream's packer, from GNU tar over a real directory,
 * and handcrafted (tar-builder.ts). Content comes from the testing library's seeded PRNG.
 */
import { generateBytes } from '@stevedore/testing';
import { spawn } from 'node:child_process';
import { link, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pack, type Header } from 'tar-stream';
import { entry, gnuLongName, header, paxEntry, tarOf } from './tar-builder.ts';

export const KiB = 1024;
export const MiB = 1024 * KiB;

export async function collect(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** A stream of `bytes` in `chunk`-byte pieces (as a network or gunzip would deliver them). */
export function chunked(bytes: Uint8Array, chunk = 64 * KiB): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < bytes.length; i += chunk) yield Buffer.from(bytes.subarray(i, i + chunk));
    })(),
  );
}

export interface PackEntry {
  readonly header: Partial<Header> & { readonly name: string };
  readonly content?: Uint8Array;
}

/** A tar written by tar-stream (ustar, PAX headers for long or non-ASCII names). */
export async function packTar(entries: readonly PackEntry[]): Promise<Buffer> {
  const p = pack();
  const done = collect(p);
  for (const e of entries) {
    await new Promise<void>((resolve, reject) => {
      p.entry(e.header, Buffer.from(e.content ?? new Uint8Array()), (err) => (err ? reject(err) : resolve()));
    });
  }
  p.finalize();
  return done;
}

/** `count` files of `size` random bytes, file `i` from seed `seed + i`. */
export function randomFiles(seed: number, count: number, size: number): PackEntry[] {
  return Array.from({ length: count }, (_, i) => ({
    header: { name: `files/f${String(i).padStart(5, '0')}.bin`, size, mtime: new Date(0) },
    content: generateBytes(seed + i, size, 'random'),
  }));
}

export const TEXT = Buffer.from(generateBytes(7, 300 * KiB, 'text'));
export const BIG = Buffer.from(generateBytes(8, 5 * MiB + 12345, 'random'));

/** tar-stream: files, directory, symlink, hard link, empty file, long and non-ASCII names. */
export function tarStreamEntries(): PackEntry[] {
  const mtime = new Date(1_700_000_000_000);
  const longName = `deep/${'a'.repeat(120)}/${'b'.repeat(90)}.txt`;
  return [
    { header: { name: 'etc/', type: 'directory', mode: 0o755, mtime } },
    { header: { name: 'etc/os-release', size: 12, mtime }, content: Buffer.from('ID=stevedore') },
    { header: { name: 'usr/share/doc/text.txt', size: TEXT.length, mtime }, content: TEXT },
    { header: { name: 'usr/lib/big.so', size: BIG.length, mtime }, content: BIG },
    { header: { name: 'empty', size: 0, mtime }, content: Buffer.alloc(0) },
    { header: { name: 'bin/sh', type: 'symlink', linkname: '/usr/bin/dash', mtime } },
    { header: { name: 'usr/lib/big-link.so', type: 'link', linkname: 'usr/lib/big.so', mtime } },
    { header: { name: longName, size: 5, mtime }, content: Buffer.from('long!') },
    { header: { name: 'ünïcødé/файл', size: 4, mtime }, content: Buffer.from('utf8') },
  ];
}

/** A real directory with symlinks, hard links, empty files and long names, for GNU tar. */
export async function makeTree(root: string): Promise<void> {
  const long = join(root, 'x'.repeat(80), 'y'.repeat(80));
  await mkdir(long, { recursive: true });
  await mkdir(join(root, 'empty-dir'));
  await writeFile(join(long, `${'z'.repeat(100)}.txt`), TEXT.subarray(0, 5000));
  await writeFile(join(root, 'big.bin'), BIG);
  await writeFile(join(root, 'empty.txt'), '');
  await writeFile(join(root, 'text.txt'), TEXT);
  await link(join(root, 'text.txt'), join(root, 'text-hardlink.txt'));
  await symlink('text.txt', join(root, 'text-symlink.txt'));
  await symlink('/nonexistent/absolute', join(root, 'dangling'));
}

/** GNU tar of `dir` in `format` (gnu: 'L' long names; pax: PAX headers), sorted and with fixed owners. */
export async function gnuTar(dir: string, format: 'gnu' | 'pax'): Promise<Buffer> {
  const child = spawn(
    'tar',
    [
      '-C',
      dir,
      `--format=${format}`,
      '--sort=name',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '-cf',
      '-',
      '.',
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const [out, err, code] = await Promise.all([
    collect(child.stdout),
    collect(child.stderr),
    new Promise<number | null>((resolve) => child.on('close', resolve)),
  ]);
  if (code !== 0) throw new Error(`tar exited with ${code}: ${err.toString()}`);
  return out;
}

/** Hostile and unusual entries, byte-exact. */
export function handcraftedTar(): Buffer {
  const small = Buffer.from('root:x:0:0::/root:/bin/sh\n');
  return tarOf(
    entry({ name: '../../etc/passwd', content: small }),
    entry({ name: '/absolute/path', content: small }),
    entry({ name: 'a/../../escape', content: Buffer.from(generateBytes(3, 3000, 'random')) }),
    header({ name: 'dev/sda', typeflag: '4', size: 0o77777777777, devmajor: 8, devminor: 0 }),
    header({ name: 'dev/null', typeflag: '3', devmajor: 1, devminor: 3 }),
    header({ name: 'dev/huge', typeflag: '3', size: 2 ** 40, base256Size: true }),
    header({ name: 'fifo', typeflag: '6' }),
    entry({ name: 'v7-file', format: 'v7', typeflag: '\0', content: Buffer.from('old style') }),
    entry({ name: 'unknown-type', typeflag: 'Z', content: Buffer.alloc(700, 0x5a) }),
    paxEntry({ path: 'pax/renamed/entry', size: '100' }),
    header({ name: 'placeholder', size: 0 }),
    Buffer.concat([Buffer.alloc(100, 0x70), Buffer.alloc(412)]),
    gnuLongName(`gnu/${'long-'.repeat(40)}name`),
    entry({ name: 'truncated-name', format: 'gnu', content: Buffer.alloc(65, 0x47) }),
    entry({ name: 'base256-sized', base256Size: true, content: Buffer.alloc(513, 0x42) }),
  );
}
