import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { basicCredential, digestOf, RegistryError, StaticCredentials } from '@stevedore/oci';
import { layerBlob, pushImage, startRegistry, type TokenRegistryServer } from '@stevedore/testing';
import { client, collect, RecordingLogger, ref, smallImage, uniqueRepository } from './support.ts';

const stack = inject('stack');

function credentialsFor(registry: { host: string; username: string; password: string }): StaticCredentials {
  return new StaticCredentials({ [registry.host]: basicCredential(registry.username, registry.password) });
}

describe('token auth', () => {
  const reg = stack.tokenRegistry;

  it('pushes with credentials and pulls a public/ repository anonymously', async () => {
    const logger = new RecordingLogger();
    const pusher = client({ credentials: credentialsFor(reg), logger });
    const repository = uniqueRepository('public/token');
    const image = await smallImage(21);
    const tagged = ref(reg.host, repository, ':v1');
    expect(await pushImage(pusher, tagged, image)).toBe(image.manifest.descriptor.digest);

    const anonymous = client();
    const pulled = await anonymous.resolveImage(tagged, { os: 'linux', architecture: 'amd64' });
    expect(pulled.manifests.map((m) => m.digest)).toEqual([image.manifest.descriptor.digest]);
    const layer = image.layers[0]!.descriptor;
    expect(digestOf(await collect(anonymous.fetchBlob({ registry: reg.host, repository }, layer)))).toBe(
      layer.digest,
    );
    expect(anonymous.tokenRequests).toBe(1);
    expect(logger.lines.join('\n')).not.toContain(reg.password);
  });

  it('anonymous push and private pull are refused with UNAUTHORIZED', async () => {
    const repository = uniqueRepository('private');
    const tagged = ref(reg.host, repository, ':v1');
    const image = await smallImage(22);
    await pushImage(client({ credentials: credentialsFor(reg) }), tagged, image);

    const anonymous = client();
    const pull = await anonymous.getManifest(tagged).catch((e: unknown) => e);
    expect(pull).toBeInstanceOf(RegistryError);
    expect((pull as RegistryError).message).toBe(
      `get manifest ${reg.host}/${repository}:v1: HTTP 401 UNAUTHORIZED: authentication required`,
    );
    expect([(pull as RegistryError).status, (pull as RegistryError).temporary]).toEqual([401, false]);

    const layer = image.layers[0]!;
    const push = await anonymous
      .pushBlob(
        { registry: reg.host, repository: uniqueRepository('public/anon') },
        layerBlob(layer),
        layer.descriptor,
      )
      .catch((e: unknown) => e);
    expect(push).toBeInstanceOf(RegistryError);
    expect((push as RegistryError).status).toBe(401);
    expect((push as RegistryError).codes).toEqual(['UNAUTHORIZED']);
  });

  it('refuses wrong credentials at the token server without echoing them', async () => {
    const wrong = client({
      credentials: new StaticCredentials({ [reg.host]: basicCredential(reg.username, 'not-the-password') }),
    });
    const err = await wrong.getManifest(ref(reg.host, 'private/x', ':v1')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryError);
    const e = err as RegistryError;
    expect(e.operation).toBe('get token for');
    expect(e.status).toBe(401);
    expect(e.message).toMatch(
      new RegExp(`^get token for ${reg.host} \\(scope repository:private/x:pull\\): HTTP 401`),
    );
    expect(e.message).not.toContain('not-the-password');
    expect(JSON.stringify(e)).not.toContain('not-the-password');
  });

  describe('token cache', () => {
    let server: TokenRegistryServer;
    beforeAll(async () => {
      server = await startRegistry({ auth: 'token' });
    });
    afterAll(async () => {
      await server.stop();
    });

    it('fetches one token per scope and reuses it', async () => {
      const c = client({ credentials: credentialsFor(server) });
      const repository = uniqueRepository('cache');
      const image = await smallImage(23);
      const tagged = ref(server.host, repository, ':v1');
      // Every push request (HEAD, POST, PUT of 2 blobs, PUT manifest) shares the pull,push token.
      await pushImage(c, tagged, image);
      expect(server.tokenRequests()).toBe(1);
      // Pulls need the pull scope: one more token, then none.
      for (let i = 0; i < 3; i++) {
        const pulled = await c.getManifest(tagged);
        expect(pulled.digest).toBe(image.manifest.descriptor.digest);
        await collect(c.fetchBlob({ registry: server.host, repository }, image.config.descriptor));
      }
      expect(server.tokenRequests()).toBe(2);
      expect(c.tokenRequests).toBe(2);
      expect(server.tokenRequestLog().map((r) => r.scopes)).toEqual([
        [`repository:${repository}:pull,push`, `repository:${repository}:pull`],
        [`repository:${repository}:pull`],
      ]);
    });
  });
});

describe('basic auth', () => {
  const reg = stack.basicRegistry;

  it('pushes and pulls with credentials', async () => {
    const logger = new RecordingLogger();
    const c = client({ credentials: credentialsFor(reg), logger });
    const repository = uniqueRepository('basic');
    const image = await smallImage(24);
    const tagged = ref(reg.host, repository, ':v1');
    expect(await pushImage(c, tagged, image)).toBe(image.manifest.descriptor.digest);
    const pulled = await c.getManifest(tagged);
    expect(pulled.digest).toBe(image.manifest.descriptor.digest);
    expect(c.tokenRequests).toBe(0);
    expect(logger.lines.join('\n')).not.toContain(reg.password);
  });

  it.each([
    { name: 'without credentials', credentials: undefined },
    { name: 'with a wrong password', credentials: 'wrong-password' },
  ])('is refused $name', async ({ credentials }) => {
    const c = client(
      credentials === undefined
        ? {}
        : { credentials: new StaticCredentials({ [reg.host]: basicCredential(reg.username, credentials) }) },
    );
    const err = await c.getManifest(ref(reg.host, 'basic/none', ':v1')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).message).toBe(
      `get manifest ${reg.host}/basic/none:v1: HTTP 401 UNAUTHORIZED: authentication required`,
    );
    expect((err as RegistryError).temporary).toBe(false);
  });
});
