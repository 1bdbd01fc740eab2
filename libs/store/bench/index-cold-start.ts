/**
 * What index compaction buys: the time a process takes to load the store's index (its first
 * refresh, before its first import or read) with one index file per import, and after
 * `compactIndex` merged them. The index files are synthetic (random object hashes and pack ids:
 * loading never reads packs), as a store of many imports would have them.
 *
 *     node libs/store/bench/index-cold-start.ts [--files 5000] [--objects 50] [--backend directory|s3|both]
 *
 * S3 is the local fauxqs server (s3-server.ts, a child process) unless STEVEDORE_BENCH_S3_ENDPOINT
 * names another (with STEVEDORE_BENCH_S3_BUCKET and _REGION, credentials from the environment).
 */
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { digestHex, digestOf } from '@stevedore/oci/spec';
import {
  diffStats,
  mapLimited,
  openStore,
  snapshotStats,
  type BackendConfig,
  type Store,
} from '../src/index.ts';
import { indexKey } from '../src/layout.ts';
import { IndexBuilder } from '../src/pack-index.ts';
import { benchBackend } from './bench-backend.ts';

const { values } = parseArgs({
  options: {
    files: { type: 'string', default: '5000' },
    objects: { type: 'string', default: '50' },
    backend: { type: 'string', default: 'both' },
  },
});
const FILES = Number(values.files);
const OBJECTS = Number(values.objects);
const BACKENDS = values.backend === 'both' ? ['directory', 's3'] : [values.backend];
/** The index files are named this long ago, so the default minimum age lets compaction take them. */
const AGE_MS = 60 * 60 * 1000;

function syntheticIndex(): Buffer {
  const b = new IndexBuilder();
  const pack = randomBytes(16).toString('hex');
  for (let i = 0, offset = 0; i < OBJECTS; i++, offset += 4096)
    b.add(randomBytes(32), pack, offset, 2048, 4096, 'zstd');
  return b.encode();
}

/** Seconds for a new process's first refresh, and the GETs it made. */
async function coldStart(config: BackendConfig): Promise<{ seconds: number; gets: number }> {
  const store = await openStore({ backend: config });
  try {
    const before = snapshotStats(store.backend.stats);
    const t0 = performance.now();
    await store.prepareReads();
    const seconds = (performance.now() - t0) / 1000;
    return { seconds, gets: diffStats(store.backend.stats, before).requests.GET };
  } finally {
    await store.close();
  }
}

async function fill(store: Store): Promise<void> {
  const start = Date.now() - AGE_MS;
  await mapLimited(
    Array.from({ length: FILES }, (_, i) => i),
    16,
    async (i) => {
      const bytes = syntheticIndex();
      await store.backend.put(indexKey(start + i, digestHex(digestOf(bytes))), bytes);
    },
  );
  await store.backend.sync();
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function measure(name: string, config: BackendConfig): Promise<void> {
  const writer = await openStore({ backend: config });
  try {
    await fill(writer);
    const runs = 3;
    const before: { seconds: number; gets: number }[] = [];
    for (let i = 0; i < runs; i++) before.push(await coldStart(config));
    const t0 = performance.now();
    const result = await writer.compactIndex();
    const compactSeconds = (performance.now() - t0) / 1000;
    const after: { seconds: number; gets: number }[] = [];
    for (let i = 0; i < runs; i++) after.push(await coldStart(config));
    const b = median(before.map((r) => r.seconds));
    const a = median(after.map((r) => r.seconds));
    console.log(
      [
        `${name}: ${FILES} index files of ${OBJECTS} objects (load ${loadavg()[0]!.toFixed(1)})`,
        `  cold start before  ${b.toFixed(3)} s, ${before[0]!.gets} GETs (median of ${runs})`,
        `  compaction         ${compactSeconds.toFixed(2)} s: ${result.merged} files (${(result.bytesBefore / 1e6).toFixed(1)} MB) into ${result.written.length} (${(result.bytesAfter / 1e6).toFixed(1)} MB), ${result.entries} entries`,
        `  cold start after   ${a.toFixed(3)} s, ${after[0]!.gets} GETs (median of ${runs}): ${(b / a).toFixed(1)}x faster`,
      ].join('\n'),
    );
  } finally {
    await writer.close();
  }
}

for (const name of BACKENDS) {
  if (name !== 'directory' && name !== 's3')
    throw new Error(`--backend: expected directory, s3 or both, got ${name}`);
  const { config, cleanup } = await benchBackend(name);
  try {
    await measure(name, config);
  } finally {
    await cleanup();
  }
}
