/**
 * Store verification (src/verify.ts) on both backends: a healthy store verifies clean and every
 * figure counts what is there; each kind of damage is reported naming what is damaged, and only
 * that; with references given, only what they reach is read.
 */
import { digestOf, parseReference, type Digest, type DiffID } from '@stevedore/oci';
import { describe, expect, it } from 'vitest';
import { verifyStore, type Store } from '../src/index.ts';
import { BACKENDS } from './backends.ts';
import { KiB, randomFiles } from './fixtures.ts';
import { commitImage as commitEntries, INDEX, MANIFEST, type Committed } from './images.ts';

/** A one-layer image of 12 random 6 KiB files from `seed`. */
function commitImage(store: Store, ref: string, seed: number): Promise<Committed> {
  return commitEntries(store, ref, randomFiles(seed, 12, 6 * KiB));
}

async function flipByte(store: Store, key: string, offset: number): Promise<void> {
  const bytes = await store.backend.getBytes(key);
  bytes[offset] = bytes[offset]! ^ 0xff;
  await store.backend.put(key, bytes);
}

const blobKey = (d: Digest): string => `blobs/sha256/${d.slice('sha256:'.length)}`;
const subjects = (r: { problems: readonly { subject: string }[] }): string[] =>
  r.problems.map((p) => p.subject).sort();

describe.each(BACKENDS)('verifying the store on $name', (backend) => {
  async function twoImages(): Promise<{ store: Store; a: Committed; b: Committed }> {
    const store = await (await backend.location())();
    const a = await commitImage(store, 'localhost:5000/team/a:1', 9100);
    const b = await commitImage(store, 'localhost:5000/team/b:1', 9200);
    return { store, a, b };
  }

  it('finds nothing wrong with a healthy store, and counts what it read', async () => {
    const { store, a, b } = await twoImages();
    // A multi-platform reference: an index whose amd64 image is stored, its arm64 image not pulled.
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: INDEX,
        manifests: [
          {
            mediaType: MANIFEST,
            digest: a.manifest,
            size: 30,
            platform: { os: 'linux', architecture: 'amd64' },
          },
          {
            mediaType: MANIFEST,
            digest: digestOf(Buffer.from('not pulled')),
            size: 30,
            platform: { os: 'linux', architecture: 'arm64' },
          },
        ],
      }),
    );
    await store.putBlob(digestOf(index), index);
    await store.setReference(parseReference('localhost:5000/team/multi:1'), digestOf(index));
    const layers: DiffID[] = [];
    const result = await verifyStore(store, { onLayer: (diffID) => layers.push(diffID) });
    expect(result.problems).toEqual([]);
    expect(result.references).toBe(3);
    expect(result.images).toBe(2);
    // Per image: manifest, config, layer blob; and the index.
    expect(result.blobs.count).toBe(7);
    expect(result.layers).toEqual({ count: 2, bytes: a.layer.tarBytes + b.layer.tarBytes });
    expect(layers.sort()).toEqual([a.layer.diffID, b.layer.diffID].sort());
  });

  it('names the layer whose pack is damaged, and only that layer', async () => {
    const { store, a, b } = await twoImages();
    expect(b.packs.length).toBeGreaterThan(0);
    const pack = b.packs[0]!;
    const size = (await store.backend.getBytes(pack)).length;
    await flipByte(store, pack, Math.floor(size / 2));
    const result = await verifyStore(store);
    expect(subjects(result)).toEqual([`layer ${b.layer.diffID}`]);
    expect(result.problems[0]!.message).toContain(pack);
    expect(result.layers.count).toBe(1);
    // Asked about image a only: b's layer is not read, and a is fine.
    const onlyA = await verifyStore(store, { references: [parseReference(a.ref)] });
    expect(onlyA.problems).toEqual([]);
    expect(onlyA).toMatchObject({ references: 1, images: 1, layers: { count: 1, bytes: a.layer.tarBytes } });
  });

  it('names a damaged blob, a missing one, and records that point at nothing', async () => {
    const { store, a, b } = await twoImages();
    await flipByte(store, blobKey(a.config), 3);
    await store.backend.delete(blobKey(b.config));
    // Damage of records: a layer record, and an image record gone.
    const c = await commitImage(store, 'localhost:5000/team/c:1', 9300);
    await store.backend.delete(`layers/sha256/${c.layer.diffID.slice('sha256:'.length)}.json`);
    const d = await commitImage(store, 'localhost:5000/team/d:1', 9400);
    await store.backend.delete(`images/sha256/${d.manifest.slice('sha256:'.length)}.json`);
    const e = await commitImage(store, 'localhost:5000/team/e:1', 9500);
    await store.backend.delete(`images/sha256/${e.manifest.slice('sha256:'.length)}.json`);
    await store.backend.delete(blobKey(e.manifest));

    const problems = new Map((await verifyStore(store)).problems.map((p) => [p.subject, p.message]));
    expect([...problems.keys()].sort()).toEqual(
      [
        `blob ${a.config}`,
        `blob ${b.config}`,
        `image ${c.manifest}`,
        `blob ${c.layer.digest}`,
        `reference ${d.ref}`,
        `reference ${e.ref}`,
      ].sort(),
    );
    expect(problems.get(`blob ${a.config}`)).toMatch(/content hashes to sha256:/);
    expect(problems.get(`blob ${b.config}`)).toBe('an image needs it and it is not in the store');
    expect(problems.get(`image ${c.manifest}`)).toContain(`layer ${c.layer.diffID}`);
    expect(problems.get(`blob ${c.layer.digest}`)).toContain(`names layer ${c.layer.diffID}`);
    expect(problems.get(`reference ${d.ref}`)).toBe(
      `points at manifest ${d.manifest}, which has no image record`,
    );
    expect(problems.get(`reference ${e.ref}`)).toBe(`points at ${e.manifest}, which is not in the store`);
  });

  it('checks digest references (pulls by digest) as it checks tags', async () => {
    const { store, a, b } = await twoImages();
    const byDigest = `localhost:5000/team/a@${a.manifest}`;
    await store.setReference(parseReference(byDigest), a.manifest);
    const healthy = await verifyStore(store);
    expect(healthy.problems).toEqual([]);
    expect(healthy).toMatchObject({ references: 3, images: 2 });
    const onlyDigest = await verifyStore(store, { references: [parseReference(byDigest)] });
    expect(onlyDigest.problems).toEqual([]);
    expect(onlyDigest).toMatchObject({
      references: 1,
      images: 1,
      layers: { count: 1, bytes: a.layer.tarBytes },
    });

    // A digest reference record rewritten to point elsewhere, and one whose image record is gone.
    const key = `refs/localhost:5000/team/a/_digests/sha256/${a.manifest.slice('sha256:'.length)}.json`;
    const record = JSON.parse((await store.backend.getBytes(key)).toString('utf8')) as object;
    await store.backend.put(key, Buffer.from(JSON.stringify({ ...record, digest: b.manifest })));
    const c = await commitImage(store, 'localhost:5000/team/c:1', 9300);
    const cByDigest = `localhost:5000/team/c@${c.manifest}`;
    await store.setReference(parseReference(cByDigest), c.manifest);
    await store.deleteReference(parseReference(c.ref));
    await store.backend.delete(`images/sha256/${c.manifest.slice('sha256:'.length)}.json`);
    const result = await verifyStore(store);
    expect(result.problems).toEqual([
      { subject: `reference ${byDigest}`, message: `points at ${b.manifest}, not at its own digest` },
      {
        subject: `reference ${cByDigest}`,
        message: `points at manifest ${c.manifest}, which has no image record`,
      },
    ]);
  });

  it('reports a reference asked about that is not in the store', async () => {
    const { store } = await twoImages();
    const result = await verifyStore(store, { references: [parseReference('localhost:5000/team/nope:1')] });
    expect(result.problems).toEqual([
      { subject: 'reference localhost:5000/team/nope:1', message: 'not in the store' },
    ]);
    expect(result).toMatchObject({ references: 0, images: 0, blobs: { count: 0 }, layers: { count: 0 } });
  });
});
