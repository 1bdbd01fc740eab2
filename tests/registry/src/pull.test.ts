import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  digestOf,
  DigestMismatchError,
  formatReference,
  OCI_MANIFEST,
  parseReference,
  RegistryError,
  serializeManifest,
  UnsupportedManifestTypeError,
  withDigest,
} from '@stevedore/oci';
import { buildIndex, pushImage, startFaultProxy, type FaultProxy } from '@stevedore/testing';
import { blob, client, collect, ref, smallImage, uniqueRepository } from './support.ts';

const stack = inject('stack');

describe('pull from the plain registry', () => {
  it('pulls by tag and by digest, with verified blobs', async () => {
    const c = client();
    const repository = uniqueRepository();
    const image = await smallImage(1);
    const tagged = ref(stack.registry.host, repository, ':v1');
    const pushed = await pushImage(c, tagged, image);
    expect(pushed).toBe(image.manifest.descriptor.digest);

    const byTag = await c.getManifest(tagged);
    expect(byTag.digest).toBe(pushed);
    expect(byTag.mediaType).toBe(OCI_MANIFEST);
    expect(Buffer.from(byTag.bytes).equals(Buffer.from(image.manifest.bytes))).toBe(true);
    expect(formatReference(byTag.reference)).toBe(`${stack.registry.host}/${repository}:v1@${pushed}`);

    const byDigest = await c.getManifest(parseReference(`${stack.registry.host}/${repository}@${pushed}`));
    expect(byDigest.digest).toBe(pushed);
    expect(byDigest.parsed.kind).toBe('manifest');
    if (byDigest.parsed.kind !== 'manifest') return;
    expect(byDigest.parsed.manifest.layers.map((l) => l.digest)).toEqual([
      image.layers[0]!.descriptor.digest,
    ]);

    const layer = byDigest.parsed.manifest.layers[0]!;
    const layerBytes = await collect(c.fetchBlob({ registry: stack.registry.host, repository }, layer));
    expect(digestOf(layerBytes)).toBe(layer.digest);
    const config = await collect(
      c.fetchBlob({ registry: stack.registry.host, repository }, byDigest.parsed.manifest.config),
    );
    expect(Buffer.from(config).equals(Buffer.from(image.config.bytes))).toBe(true);

    expect(await c.headManifest(tagged)).toEqual({
      digest: pushed,
      mediaType: OCI_MANIFEST,
      size: image.manifest.bytes.byteLength,
    });
  });

  it('selects the platform of a pushed index', async () => {
    const c = client();
    const repository = uniqueRepository();
    const amd64 = await smallImage(2, { os: 'linux', architecture: 'amd64' });
    const arm64 = await smallImage(3, { os: 'linux', architecture: 'arm64', variant: 'v8' });
    const index = buildIndex({ images: [amd64, arm64] });
    const tagged = ref(stack.registry.host, repository, ':multi');
    expect(await pushImage(c, tagged, index)).toBe(index.manifest.descriptor.digest);

    const cases = [
      { platform: { os: 'linux', architecture: 'amd64' }, want: [amd64.manifest.descriptor.digest] },
      {
        platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
        want: [arm64.manifest.descriptor.digest],
      },
      // arm64 without a variant means v8.
      { platform: { os: 'linux', architecture: 'arm64' }, want: [arm64.manifest.descriptor.digest] },
      {
        platform: 'all' as const,
        want: [amd64.manifest.descriptor.digest, arm64.manifest.descriptor.digest],
      },
    ];
    for (const { platform, want } of cases) {
      const resolved = await c.resolveImage(tagged, platform);
      expect(resolved.root.digest).toBe(index.manifest.descriptor.digest);
      expect(resolved.root.parsed.kind).toBe('index');
      expect(resolved.manifests.map((m) => m.digest)).toEqual(want);
      for (const m of resolved.manifests) expect(m.reference.digest).toBe(m.digest);
    }
    const arm = await c.resolveImage(tagged, { os: 'linux', architecture: 'arm64', variant: 'v8' });
    expect(arm.manifests[0]!.platform).toEqual({ architecture: 'arm64', os: 'linux', variant: 'v8' });
    expect(arm.manifests[0]!.manifest.layers[0]!.digest).toBe(arm64.layers[0]!.descriptor.digest);

    const err = await c.resolveImage(tagged, { os: 'linux', architecture: 's390x' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).message).toMatch(
      new RegExp(
        `^resolve image ${stack.registry.host}/${repository}:multi@${index.manifest.descriptor.digest} for linux/s390x: `,
      ),
    );
    expect((err as RegistryError).temporary).toBe(false);
  });

  it('a single manifest resolves to itself', async () => {
    const c = client();
    const repository = uniqueRepository();
    const image = await smallImage(4);
    const tagged = ref(stack.registry.host, repository, ':one');
    await pushImage(c, tagged, image);
    const resolved = await c.resolveImage(tagged, { os: 'linux', architecture: 'arm64' });
    expect(resolved.manifests.map((m) => [m.digest, m.platform])).toEqual([
      [image.manifest.descriptor.digest, undefined],
    ]);
  });

  it('an unknown repository fails with a clear error', async () => {
    const c = client();
    const missing = { registry: stack.registry.host, repository: 'nobody/home' };
    const tags = await c.listTags(missing).catch((e: unknown) => e);
    expect(tags).toBeInstanceOf(RegistryError);
    expect((tags as RegistryError).message).toBe(
      `list tags ${stack.registry.host}/nobody/home: HTTP 404 NAME_UNKNOWN: repository name not known to registry`,
    );
    expect([(tags as RegistryError).status, (tags as RegistryError).codes]).toEqual([404, ['NAME_UNKNOWN']]);
    // distribution answers a manifest GET in an unknown repository as an unknown manifest.
    const manifest = await c.getManifest(ref(stack.registry.host, 'nobody/home')).catch((e: unknown) => e);
    expect((manifest as RegistryError).message).toBe(
      `get manifest ${stack.registry.host}/nobody/home:latest: HTTP 404 MANIFEST_UNKNOWN: manifest unknown`,
    );
  });

  it('an unknown tag fails with a clear error, and listTags names the tags there are', async () => {
    const c = client();
    const repository = uniqueRepository();
    const image = await smallImage(5);
    await pushImage(c, ref(stack.registry.host, repository, ':b'), image);
    await pushImage(c, ref(stack.registry.host, repository, ':a'), image);
    // distribution 2.8 lists in storage order when `n` is given: compare as sets.
    expect((await c.listTags({ registry: stack.registry.host, repository })).sort()).toEqual(['a', 'b']);
    const err = await c
      .getManifest(ref(stack.registry.host, repository, ':missing'))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryError);
    const e = err as RegistryError;
    expect(e.message).toBe(
      `get manifest ${stack.registry.host}/${repository}:missing: HTTP 404 MANIFEST_UNKNOWN: manifest unknown`,
    );
    expect([e.status, e.codes, e.temporary, e.operation]).toEqual([
      404,
      ['MANIFEST_UNKNOWN'],
      false,
      'get manifest',
    ]);
    const head = await c
      .headManifest(ref(stack.registry.host, repository, ':missing'))
      .catch((x: unknown) => x);
    expect((head as RegistryError).message).toBe(
      `head manifest ${stack.registry.host}/${repository}:missing: HTTP 404`,
    );
    expect([(head as RegistryError).status, (head as RegistryError).temporary]).toEqual([404, false]);
  });

  it('an unknown blob fails with BLOB_UNKNOWN', async () => {
    const c = client();
    const repository = uniqueRepository();
    await pushImage(c, ref(stack.registry.host, repository), await smallImage(6));
    const missing = blob(99, 10);
    const err = await collect(c.fetchBlob({ registry: stack.registry.host, repository }, missing)).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).message).toBe(
      `fetch blob ${stack.registry.host}/${repository}@${missing.digest}: HTTP 404 BLOB_UNKNOWN: blob unknown to registry`,
    );
    expect((err as RegistryError).status).toBe(404);
  });

  it('an unknown layer media type is refused as unsupported', async () => {
    const c = client();
    const repository = uniqueRepository();
    const repo = { registry: stack.registry.host, repository };
    const layer = blob(7, 100);
    const config = new TextEncoder().encode('{}');
    await c.pushBlob(repo, layer.bytes, layer);
    await c.pushBlob(repo, config, { digest: digestOf(config), size: config.byteLength });
    const weird = 'application/vnd.example.weird.layer';
    const manifest = serializeManifest({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json' as never,
        digest: digestOf(config),
        size: config.byteLength,
      },
      layers: [{ mediaType: weird as never, digest: layer.digest, size: layer.size }],
    });
    const tagged = ref(stack.registry.host, repository, ':weird');
    expect(await c.putManifest(tagged, manifest, OCI_MANIFEST)).toBe(digestOf(manifest));

    const err = await c.getManifest(tagged).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsupportedManifestTypeError);
    expect((err as UnsupportedManifestTypeError).message).toBe(
      `get manifest ${stack.registry.host}/${repository}:weird: unsupported media type "${weird}"`,
    );
    expect((err as UnsupportedManifestTypeError).mediaType).toBe(weird);
  });

  it('putManifest refuses a body that does not match the digest of the reference', async () => {
    const c = client();
    const body = new TextEncoder().encode('{"schemaVersion":2}');
    const other = digestOf('other');
    const target = parseReference(`${stack.registry.host}/${uniqueRepository()}@${other}`);
    const err = await c.putManifest(target, body, OCI_MANIFEST).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DigestMismatchError);
    expect((err as Error).message).toBe(
      `put manifest ${formatReference(target)}: digest mismatch, expected ${other}, got ${digestOf(body)}`,
    );
  });
});

describe('push', () => {
  let proxy: FaultProxy;
  beforeAll(async () => {
    proxy = await startFaultProxy({ upstream: stack.registry.url });
  });
  afterAll(async () => {
    await proxy.stop();
  });

  it('pushes in chunks, skips blobs already present, and mounts across repositories', async () => {
    const c = client();
    const repository = uniqueRepository('push');
    const repo = { registry: proxy.host, repository };
    const content = blob(11, 100_000);
    await c.pushBlob(repo, content.bytes, content, { chunkSize: 30_000 });
    const patches = proxy.requests({
      method: 'PATCH',
      path: new RegExp(`^/v2/${repository}/blobs/uploads/`),
    });
    expect(patches.map((r) => [r.headers['content-range'], r.status])).toEqual([
      ['0-29999', 202],
      ['30000-59999', 202],
      ['60000-89999', 202],
      ['90000-99999', 202],
    ]);
    expect(Buffer.from(await collect(c.fetchBlob(repo, content))).equals(Buffer.from(content.bytes))).toBe(
      true,
    );

    proxy.resetCounters();
    await c.pushBlob(repo, content.bytes, content);
    expect(proxy.requests().map((r) => `${r.method} ${r.status}`)).toEqual(['HEAD 200']);

    const other = { registry: proxy.host, repository: uniqueRepository('push') };
    expect(await c.mountBlob(other, content.digest, repository)).toBe(true);
    expect(Buffer.from(await collect(c.fetchBlob(other, content))).equals(Buffer.from(content.bytes))).toBe(
      true,
    );
    const absent = blob(12, 10);
    expect(await c.mountBlob(other, absent.digest, repository)).toBe(false);
  });

  it('pushes a stream monolithically; the registry verifies the digest', async () => {
    const c = client();
    const repo = { registry: stack.registry.host, repository: uniqueRepository('push') };
    const content = blob(13, 70_000);
    const { Readable } = await import('node:stream');
    await c.pushBlob(
      repo,
      () => Readable.from([content.bytes.subarray(0, 1000), content.bytes.subarray(1000)]),
      content,
    );
    expect(digestOf(await collect(c.fetchBlob(repo, content)))).toBe(content.digest);

    const wrong = { digest: digestOf('not the content'), size: content.size };
    const err = await c.pushBlob(repo, content.bytes, wrong).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).codes).toEqual(['DIGEST_INVALID']);
    expect((err as RegistryError).message).toMatch(
      new RegExp(`^push blob ${repo.registry}/${repo.repository}@${wrong.digest}: HTTP 400 DIGEST_INVALID`),
    );
  });

  it('pushes a manifest by digest', async () => {
    const c = client();
    const repository = uniqueRepository('push');
    const image = await smallImage(14);
    await pushImage(c, ref(stack.registry.host, repository, ':t'), image);
    const byDigest = withDigest(
      parseReference(`${stack.registry.host}/${repository}:t`),
      image.manifest.descriptor.digest,
    );
    expect(await c.putManifest(byDigest, image.manifest.bytes, OCI_MANIFEST)).toBe(
      image.manifest.descriptor.digest,
    );
  });
});
