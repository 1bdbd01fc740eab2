import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ChainedCredentials,
  DockerConfigCredentials,
  EnvCredentials,
  StaticCredentials,
  basicCredential,
  credentialFromEntry,
  defaultDockerConfigPath,
  helperServerUrl,
  identityTokenCredential,
  normalizeRegistry,
  registryTokenCredential,
  runCredentialHelper,
  type Credential,
} from './credentials.ts';

const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('normalizeRegistry and helperServerUrl', () => {
  it.each([
    { key: 'docker.io', host: 'docker.io', url: 'https://index.docker.io/v1/' },
    { key: 'https://index.docker.io/v1/', host: 'docker.io', url: 'https://index.docker.io/v1/' },
    { key: 'registry-1.docker.io', host: 'docker.io', url: 'https://index.docker.io/v1/' },
    { key: 'https://ghcr.io', host: 'ghcr.io', url: 'ghcr.io' },
    { key: 'http://LocalHost:5000/v2/', host: 'localhost:5000', url: 'localhost:5000' },
    { key: '[::1]:5000', host: '[::1]:5000', url: '[::1]:5000' },
  ])('$key', ({ key, host, url }) => {
    expect(normalizeRegistry(key)).toBe(host);
    expect(helperServerUrl(key)).toBe(url);
  });
});

describe('credentialFromEntry', () => {
  it.each<{ name: string; entry: unknown; want: Credential | undefined }>([
    { name: 'base64 auth', entry: { auth: b64('alice:pa:ss') }, want: basicCredential('alice', 'pa:ss') },
    {
      name: 'username and password',
      entry: { username: 'bob', password: 'pw' },
      want: basicCredential('bob', 'pw'),
    },
    {
      name: 'identity token wins',
      entry: { auth: b64('carol:x'), identitytoken: 'refresh' },
      want: identityTokenCredential('refresh', 'carol'),
    },
    { name: 'registry token', entry: { registrytoken: 'bearer' }, want: registryTokenCredential('bearer') },
    { name: 'placeholder entry', entry: {}, want: undefined },
    { name: 'empty auth', entry: { auth: '' }, want: undefined },
  ])('$name', ({ entry, want }) => {
    expect(credentialFromEntry(entry, 'test')).toEqual(want);
  });
  it.each([
    { entry: { auth: b64('nocolon-secret') }, message: 'src: "auth" is not base64 of "username:password"' },
    { entry: 'str', message: 'src: expected an object' },
  ])('rejects $entry without quoting it', ({ entry, message }) => {
    expect(() => credentialFromEntry(entry, 'src')).toThrow(message);
  });
});

describe('redaction', () => {
  it.each([
    basicCredential('u', 'hunter2'),
    identityTokenCredential('hunter2'),
    registryTokenCredential('hunter2'),
  ])('$kind prints as [credential]', (c) => {
    expect(JSON.stringify({ c })).toBe('{"c":"[credential]"}');
    expect(inspect(c)).toBe('[credential]');
    expect(`${inspect({ c })}`).not.toContain('hunter2');
  });
});

describe('EnvCredentials', () => {
  it('reads STEVEDORE_REGISTRY_AUTH, matching Docker Hub aliases', async () => {
    const store = new EnvCredentials({
      STEVEDORE_REGISTRY_AUTH: JSON.stringify({
        'localhost:5000': { username: 'u', password: 'p' },
        'index.docker.io': { auth: b64('hub:secret') },
      }),
    });
    expect(await store.get('localhost:5000')).toEqual(basicCredential('u', 'p'));
    expect(await store.get('docker.io')).toEqual(basicCredential('hub', 'secret'));
    expect(await store.get('ghcr.io')).toBeUndefined();
  });
  it('is empty when unset', async () => {
    expect(await new EnvCredentials({}).get('docker.io')).toBeUndefined();
  });
  it.each([
    { value: '{"a": {"password": "hunter2"', message: 'STEVEDORE_REGISTRY_AUTH is not valid JSON' },
    { value: '["hunter2"]', message: 'STEVEDORE_REGISTRY_AUTH must be a JSON object keyed by registry' },
    {
      value: '{"r.io": {"password": "hunter2"}}',
      message: 'STEVEDORE_REGISTRY_AUTH["r.io"]: needs "username" and "password", "auth" or "identitytoken"',
    },
  ])('rejects $value without quoting it', ({ value, message }) => {
    let thrown: unknown;
    try {
      new EnvCredentials({ STEVEDORE_REGISTRY_AUTH: value });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(Error);
    expect((thrown as Error).message).toBe(message);
    expect((thrown as Error).cause).toBeUndefined();
  });
});

describe('StaticCredentials and ChainedCredentials', () => {
  it('takes the first store that knows the registry', async () => {
    const chain = new ChainedCredentials([
      new StaticCredentials({ 'a.io': basicCredential('first', '1') }),
      new StaticCredentials({ 'a.io': basicCredential('second', '2'), 'b.io': basicCredential('b', '3') }),
    ]);
    expect(await chain.get('a.io')).toEqual(basicCredential('first', '1'));
    expect(await chain.get('b.io')).toEqual(basicCredential('b', '3'));
    expect(await chain.get('c.io')).toBeUndefined();
  });
});

describe('defaultDockerConfigPath', () => {
  it.each([
    { env: { DOCKER_CONFIG: '/etc/dock' }, want: '/etc/dock/config.json' },
    { env: { HOME: '/x' }, want: join(process.env['HOME'] ?? '', '.docker', 'config.json') },
  ])('$env', ({ env, want }) => {
    expect(defaultDockerConfigPath(env)).toBe(want);
  });
});

describe('Docker config and credential helpers', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  // A fake docker-credential helper: answers by server URL, like docker-credential-helpers do.
  const helper = `#!/bin/sh
[ "$1" = get ] || { echo "unexpected action $1" >&2; exit 9; }
url=$(cat)
case "$url" in
  https://index.docker.io/v1/) echo '{"ServerURL":"https://index.docker.io/v1/","Username":"hubuser","Secret":"hubpass"}' ;;
  localhost:5000) echo '{"ServerURL":"localhost:5000","Username":"<token>","Secret":"refresh-tok"}' ;;
  broken.example) echo 'keychain locked' >&2; exit 3 ;;
  garbage.example) echo 'not json hunter2' ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
`;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stevedore-creds-'));
    await writeFile(join(dir, 'docker-credential-fake'), helper);
    await chmod(join(dir, 'docker-credential-fake'), 0o755);
    env = { ...process.env, PATH: `${dir}:${process.env['PATH'] ?? ''}` };
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it.each([
    { registry: 'docker.io', want: basicCredential('hubuser', 'hubpass') },
    { registry: 'localhost:5000', want: identityTokenCredential('refresh-tok') },
    { registry: 'unknown.example', want: undefined },
  ])('runCredentialHelper for $registry', async ({ registry, want }) => {
    expect(await runCredentialHelper('fake', helperServerUrl(registry), { env })).toEqual(want);
  });

  it.each([
    {
      registry: 'broken.example',
      message:
        'credential helper for broken.example: docker-credential-fake exited with code 3: keychain locked',
    },
    {
      registry: 'garbage.example',
      message: 'credential helper docker-credential-fake for garbage.example: output is not JSON',
    },
  ])('helper failure for $registry names the helper, not the output', async ({ registry, message }) => {
    const err = await runCredentialHelper('fake', registry, { env }).catch((e: unknown) => e);
    expect((err as Error).message).toBe(message);
    expect((err as Error).cause).toBeUndefined();
  });

  it('rejects a missing helper and helper names with paths', async () => {
    await expect(runCredentialHelper('absent', 'x.io', { env })).rejects.toThrow(
      'credential helper for x.io: docker-credential-absent not found on PATH',
    );
    await expect(runCredentialHelper('../evil', 'x.io', { env })).rejects.toThrow(
      'invalid credential helper name "../evil"',
    );
  });

  it('uses credHelpers, then credsStore, then auths', async () => {
    const path = join(dir, 'config.json');
    await writeFile(
      path,
      JSON.stringify({
        auths: {
          'https://index.docker.io/v1/': {},
          'inline.example': { auth: b64('inline:pw') },
          'http://other.example/v2/': { username: 'o', password: 'p' },
        },
        credHelpers: { 'localhost:5000': 'fake', 'broken.example': 'fake' },
        credsStore: 'fake',
      }),
    );
    const store = new DockerConfigCredentials({ path, env });
    expect(await store.get('localhost:5000')).toEqual(identityTokenCredential('refresh-tok'));
    expect(await store.get('docker.io')).toEqual(basicCredential('hubuser', 'hubpass'));
    expect(await store.get('inline.example')).toEqual(basicCredential('inline', 'pw'));
    expect(await store.get('other.example')).toEqual(basicCredential('o', 'p'));
    expect(await store.get('nothing.example')).toBeUndefined();
    await expect(store.get('broken.example')).rejects.toThrow('exited with code 3');
  });

  it('finds the config through DOCKER_CONFIG, and a missing file means no credentials', async () => {
    await writeFile(join(dir, 'config.json'), JSON.stringify({ auths: { 'a.io': { auth: b64('a:b') } } }));
    expect(await new DockerConfigCredentials({ env: { DOCKER_CONFIG: dir } }).get('a.io')).toEqual(
      basicCredential('a', 'b'),
    );
    expect(await new DockerConfigCredentials({ path: join(dir, 'absent.json') }).get('a.io')).toBeUndefined();
  });

  it('a malformed config fails without quoting it', async () => {
    const path = join(dir, 'bad.json');
    await writeFile(path, '{"auths": {"a.io": {"auth": "hunter2"');
    const err = await new DockerConfigCredentials({ path }).get('a.io').catch((e: unknown) => e);
    expect((err as Error).message).toBe(`Docker config ${path} is not valid JSON`);
    expect((err as Error).cause).toBeUndefined();
  });
});
