/**
 * Handcrafted tar headers for tests: byte-exact control over fields that tar writers refuse to
 * produce (devices with sizes, hostile names, base-256 sizes, bad checksums, GNU long names).
 */

export const BLOCK = 512;

export interface HeaderSpec {
  readonly name: string;
  readonly size?: number;
  /** Type flag character; default '0'. */
  readonly typeflag?: string;
  readonly linkname?: string;
  readonly mode?: number;
  readonly format?: 'ustar' | 'gnu' | 'v7';
  /** Size field as base-256 (GNU) instead of octal. */
  readonly base256Size?: boolean;
  readonly devmajor?: number;
  readonly devminor?: number;
  /** Add this to the computed checksum (to corrupt it). */
  readonly checksumDelta?: number;
}

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

/** One 512-byte header block. */
export function header(spec: HeaderSpec): Buffer {
  const b = Buffer.alloc(BLOCK);
  const format = spec.format ?? 'ustar';
  b.write(spec.name, 0, 100, 'utf8');
  b.write(octal(spec.mode ?? 0o644, 8), 100, 'latin1');
  b.write(octal(0, 8), 108, 'latin1');
  b.write(octal(0, 8), 116, 'latin1');
  const size = spec.size ?? 0;
  if (spec.base256Size === true) {
    b[124] = 0x80;
    let v = BigInt(size);
    for (let i = 135; i > 124; i--) {
      b[i] = Number(v & 0xffn);
      v >>= 8n;
    }
  } else {
    b.write(octal(size, 12), 124, 'latin1');
  }
  b.write(octal(0, 12), 136, 'latin1');
  b.write(spec.typeflag ?? '0', 156, 'latin1');
  if (spec.linkname !== undefined) b.write(spec.linkname, 157, 100, 'utf8');
  if (format === 'ustar') {
    b.write('ustar\0', 257, 'latin1');
    b.write('00', 263, 'latin1');
  } else if (format === 'gnu') {
    b.write('ustar ', 257, 'latin1');
    b.write(' \0', 263, 'latin1');
  }
  if (format !== 'v7') {
    b.write(octal(spec.devmajor ?? 0, 8), 329, 'latin1');
    b.write(octal(spec.devminor ?? 0, 8), 337, 'latin1');
  }
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write(`${(sum + (spec.checksumDelta ?? 0)).toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return b;
}

/** Content padded to a whole number of blocks. */
export function padded(content: Uint8Array): Buffer {
  const pad = (BLOCK - (content.length % BLOCK)) % BLOCK;
  return Buffer.concat([content, Buffer.alloc(pad)]);
}

/** A header plus its padded content. */
export function entry(spec: Omit<HeaderSpec, 'size'> & { content?: Uint8Array; size?: number }): Buffer {
  const content = spec.content ?? Buffer.alloc(0);
  return Buffer.concat([header({ ...spec, size: spec.size ?? content.length }), padded(content)]);
}

/** A PAX record `"%d key=value\n"` with its self-inclusive length. */
export function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body) + 1;
  while (String(len).length + Buffer.byteLength(body) !== len) len++;
  return `${len}${body}`;
}

/** A PAX extended header entry ('x') carrying `records`. */
export function paxEntry(records: Record<string, string>): Buffer {
  const content = Buffer.from(
    Object.entries(records)
      .map(([k, v]) => paxRecord(k, v))
      .join(''),
    'utf8',
  );
  return entry({ name: 'PaxHeaders/x', typeflag: 'x', content });
}

/** A GNU long name entry ('L') for the next header. */
export function gnuLongName(name: string): Buffer {
  return entry({
    name: '././@LongLink',
    typeflag: 'L',
    format: 'gnu',
    content: Buffer.from(`${name}\0`, 'utf8'),
  });
}

/** The end-of-archive marker: two zero blocks. */
export const END = Buffer.alloc(2 * BLOCK);

export function tarOf(...parts: Uint8Array[]): Buffer {
  return Buffer.concat([...parts, END]);
}
