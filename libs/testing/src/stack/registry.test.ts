import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { AddressInUseError } from './ports.ts';
import { isAlive } from './process.ts';
import { requireProgram } from './programs.ts';
import { makeTempDir, removeTempDir } from './temp-dir.ts';
import {
  serveRegistry,
  startRegistry,
  TOKEN_SERVICE,
  type BasicRegistryServer,
  type RegistryServer,
  type TokenRegistryServer,
} from './registry.ts';
import { basicAuthorization, fetchToken, jwtClaims, occupyPort, pushBlob } from './test-support.ts';

describe('startRegistry', () => {
  let plain: RegistryServer;
  let token: TokenRegistryServer;
  let basic: BasicRegistryServer;
  beforeAll(async () => {
    [plain, token, basic] = await Promise.all([
      startRegistry(),
      startRegistry({ auth: 'token' }),
      startRegistry({ auth: 'basic' }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([plain.stop(), token.stop(), basic.stop()]);
  });

  describe('no auth', () => {
    it('answers GET /v2/ with 200 on 127.0.0.1', async () => {
      expect(plain.host).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(plain.url).toBe(`http://${plain.host}`);
      const res = await fetch(`${plain.url}/v2/`);
      expect(res.status).toBe(200);
      expect(res.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
      expect(plain.username).toBeUndefined();
    });

    it('stores, serves and deletes a blob; logs requests', async () => {
      const bytes = randomBytes(1000);
      const digest = await pushBlob(plain.url, 'plain/blob', bytes);
      const res = await fetch(`${plain.url}/v2/plain/blob/blobs/${digest}`);
      expect(Buffer.from(await res.arrayBuffer())).toEqual(bytes);
      const del = await fetch(`${plain.url}/v2/plain/blob/blobs/${digest}`, { method: 'DELETE' });
      expect(del.status).toBe(202);
      expect(plain.logs()).toContain(`"DELETE /v2/plain/blob/blobs/${digest} HTTP/1.1" 202`);
    });
  });

  describe('token auth', () => {
    it('challenges GET /v2/ with the Bearer realm and service', async () => {
      const res = await fetch(`${token.url}/v2/`);
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe(
        `Bearer realm="${token.realm}",service="${TOKEN_SERVICE}"`,
      );
      expect(token.realm).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/token$/);
    });

    it('issues a push token to valid credentials; it pushes and pulls a blob', async () => {
      const before = token.tokenRequests();
      const scope = 'repository:team/app:pull,push';
      const { status, body } = await fetchToken(token.realm, token.service, scope, {
        user: token.username,
        password: token.password,
      });
      expect(status).toBe(200);
      expect(body.access_token).toBe(body.token);
      expect(body.expires_in).toBe(300);
      expect(jwtClaims(body.token)).toMatchObject({
        iss: token.issuer,
        sub: token.username,
        aud: TOKEN_SERVICE,
        access: [{ type: 'repository', name: 'team/app', actions: ['pull', 'push'] }],
      });
      const bytes = Buffer.from('hello from the token flow\n');
      const digest = await pushBlob(token.url, 'team/app', bytes, `Bearer ${body.token}`);
      const res = await fetch(`${token.url}/v2/team/app/blobs/${digest}`, {
        headers: { authorization: `Bearer ${body.token}` },
      });
      expect(res.status).toBe(200);
      expect(Buffer.from(await res.arrayBuffer())).toEqual(bytes);
      expect(token.tokenRequests()).toBe(before + 1);
      expect(token.tokenRequestLog().at(-1)).toEqual({
        user: token.username,
        scopes: [scope],
        status: 200,
        granted: [{ type: 'repository', name: 'team/app', actions: ['pull', 'push'] }],
      });
    });

    it('gives anonymous clients pull on public/ only', async () => {
      const { body: pushToken } = await fetchToken(
        token.realm,
        token.service,
        'repository:public/base:pull,push',
        {
          user: token.username,
          password: token.password,
        },
      );
      const bytes = Buffer.from('public bytes');
      const digest = await pushBlob(token.url, 'public/base', bytes, `Bearer ${pushToken.token}`);

      const anonymous = await fetchToken(token.realm, token.service, 'repository:public/base:pull,push');
      expect(anonymous.status).toBe(200);
      expect(jwtClaims(anonymous.body.token).access).toEqual([
        { type: 'repository', name: 'public/base', actions: ['pull'] },
      ]);
      const auth = { authorization: `Bearer ${anonymous.body.token}` };
      const pull = await fetch(`${token.url}/v2/public/base/blobs/${digest}`, { headers: auth });
      expect(Buffer.from(await pull.arrayBuffer())).toEqual(bytes);
      const push = await fetch(`${token.url}/v2/public/base/blobs/uploads/`, {
        method: 'POST',
        headers: auth,
      });
      expect(push.status).toBe(401);
      // distribution lists the scope's actions in Go map order: either order is right.
      const challenge = push.headers.get('www-authenticate')!;
      expect(challenge.replace('push,pull', 'pull,push')).toBe(
        `Bearer realm="${token.realm}",service="${TOKEN_SERVICE}",scope="repository:public/base:pull,push",error="insufficient_scope"`,
      );

      const privateRepo = await fetchToken(token.realm, token.service, 'repository:team/app:pull');
      expect(jwtClaims(privateRepo.body.token).access).toEqual([]);
      const denied = await fetch(`${token.url}/v2/team/app/tags/list`, {
        headers: { authorization: `Bearer ${privateRepo.body.token}` },
      });
      expect(denied.status).toBe(401);
    });

    it.each([
      ['wrong password', basicAuthorization('stevedore', 'wrong'), 401],
      ['unknown user', basicAuthorization('mallory', 'x'), 401],
      ['not Basic', 'Bearer abc', 401],
    ])('refuses %s with 401', async (_name, authorization, status) => {
      const before = token.tokenRequestLog().length;
      const res = await fetch(`${token.realm}?service=${TOKEN_SERVICE}&scope=repository:team/app:pull`, {
        headers: { authorization },
      });
      expect(res.status).toBe(status);
      expect(res.headers.get('www-authenticate')).toBe('Basic realm="stevedore test token server"');
      expect(token.tokenRequestLog().slice(before)).toHaveLength(1);
    });

    it('refuses another service with 400', async () => {
      const res = await fetch(`${token.realm}?service=other&scope=repository:team/app:pull`);
      expect(res.status).toBe(400);
    });

    it('a token past expires_in is refused by the registry (exp accounts for its 60 s leeway)', async () => {
      const expiring = await startRegistry({ auth: 'token', tokenExpiresIn: 0 });
      try {
        const { body } = await fetchToken(expiring.realm, expiring.service, 'repository:x/y:pull', {
          user: expiring.username,
          password: expiring.password,
        });
        expect(body.expires_in).toBe(0);
        const res = await fetch(`${expiring.url}/v2/x/y/tags/list`, {
          headers: { authorization: `Bearer ${body.token}` },
        });
        expect(res.status).toBe(401);
        // The registry logs the reason after it has answered: wait for the line.
        await expect.poll(() => expiring.logs()).toMatch(/token not to be used after/);
      } finally {
        await expiring.stop();
      }
    });
  });

  describe('basic auth', () => {
    it('answers 401 with a Basic challenge without credentials', async () => {
      const res = await fetch(`${basic.url}/v2/`);
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Basic realm="stevedore test registry"');
    });

    it('answers 200 with the generated credentials and 401 with wrong ones', async () => {
      expect(basic.username).toBe('stevedore');
      expect(basic.password).toMatch(/^[0-9a-f]{24}$/);
      const ok = await fetch(`${basic.url}/v2/`, {
        headers: { authorization: basicAuthorization(basic.username, basic.password) },
      });
      expect(ok.status).toBe(200);
      const wrong = await fetch(`${basic.url}/v2/`, {
        headers: { authorization: basicAuthorization(basic.username, 'nope') },
      });
      expect(wrong.status).toBe(401);
    });
  });

  it('stop() kills the registry and the token server and removes storage; twice is fine', async () => {
    const r = await startRegistry({ auth: 'token' });
    expect(isAlive(r.pid)).toBe(true);
    expect(existsSync(r.storageDir)).toBe(true);
    await r.stop();
    await r.stop();
    expect(isAlive(r.pid)).toBe(false);
    expect(existsSync(r.storageDir)).toBe(false);
    await expect(fetch(`${r.url}/v2/`)).rejects.toThrow();
    await expect(fetch(r.realm)).rejects.toThrow();
  });

  it('reports a taken port as AddressInUseError (startRegistry then retries elsewhere)', async () => {
    const taken = await occupyPort();
    const dir = await makeTempDir('registry-port-test');
    try {
      const rootDirectory = join(dir, 'storage');
      await mkdir(rootDirectory);
      const failed = serveRegistry(await requireProgram('docker-registry'), {
        port: taken.port,
        dir,
        rootDirectory,
        auth: { kind: 'none' },
      });
      await expect(failed).rejects.toBeInstanceOf(AddressInUseError);
    } finally {
      await taken.release();
      await removeTempDir(dir);
    }
  });
});
