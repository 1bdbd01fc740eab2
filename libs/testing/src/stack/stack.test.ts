import { HeadBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { Redis } from 'ioredis';
import { describe, expect, inject, it } from 'vitest';
import type { StackInfo } from '../index.ts';
import { isAlive } from './process.ts';
import { startStack } from './stack.ts';
import { basicAuthorization, fetchToken } from './test-support.ts';

/** Every server of a stack answers. */
async function expectAnswers(stack: StackInfo): Promise<void> {
  const redis = new Redis(stack.redis.url, { lazyConnect: true, maxRetriesPerRequest: 0 });
  await redis.connect();
  try {
    expect(await redis.ping()).toBe('PONG');
  } finally {
    redis.disconnect();
  }
  expect((await fetch(`${stack.registry.url}/v2/`)).status).toBe(200);
  const challenge = await fetch(`${stack.tokenRegistry.url}/v2/`);
  expect(challenge.status).toBe(401);
  expect(challenge.headers.get('www-authenticate')).toBe(
    `Bearer realm="${stack.tokenRegistry.realm}",service="${stack.tokenRegistry.service}"`,
  );
  const { user, password } = { user: stack.tokenRegistry.username, password: stack.tokenRegistry.password };
  const { status, body } = await fetchToken(stack.tokenRegistry.realm, stack.tokenRegistry.service, '', {
    user,
    password,
  });
  expect(status).toBe(200);
  expect(
    (await fetch(`${stack.tokenRegistry.url}/v2/`, { headers: { authorization: `Bearer ${body.token}` } }))
      .status,
  ).toBe(200);
  expect((await fetch(`${stack.basicRegistry.url}/v2/`)).status).toBe(401);
  const basic = await fetch(`${stack.basicRegistry.url}/v2/`, {
    headers: {
      authorization: basicAuthorization(stack.basicRegistry.username, stack.basicRegistry.password),
    },
  });
  expect(basic.status).toBe(200);
  const s3 = new S3Client({
    endpoint: stack.s3.endpoint,
    region: stack.s3.region,
    forcePathStyle: stack.s3.forcePathStyle,
    credentials: { accessKeyId: stack.s3.accessKeyId, secretAccessKey: stack.s3.secretAccessKey },
  });
  try {
    expect((await s3.send(new HeadBucketCommand({ Bucket: stack.s3.bucket }))).$metadata.httpStatusCode).toBe(
      200,
    );
  } finally {
    s3.destroy();
  }
}

describe('the stack from the Vitest global setup', () => {
  it('is provided to tests as plain data, every server answering', async () => {
    const stack = inject('stack');
    expect(JSON.parse(JSON.stringify(stack))).toEqual(stack);
    expect(stack.registry.auth).toBe('none');
    expect(stack.tokenRegistry.auth).toBe('token');
    expect(stack.basicRegistry.auth).toBe('basic');
    expect(new Set([stack.registry.host, stack.tokenRegistry.host, stack.basicRegistry.host]).size).toBe(3);
    await expectAnswers(stack);
  });
});

describe('startStack', () => {
  it('starts every server and stop() leaves no process behind', async () => {
    const stack = await startStack({ tokenExpiresIn: 42 });
    const pids = [
      stack.redis.pid,
      stack.registry.pid,
      stack.tokenRegistry.pid,
      stack.basicRegistry.pid,
      stack.s3.pid,
    ];
    try {
      expect(pids.map(isAlive)).toEqual([true, true, true, true, true]);
      await expectAnswers(stack.info());
      const { body } = await fetchToken(stack.tokenRegistry.realm, stack.tokenRegistry.service, '');
      expect(body.expires_in).toBe(42);
    } finally {
      await stack.stop();
    }
    expect(pids.map(isAlive)).toEqual([false, false, false, false, false]);
    await stack.stop();
  });
});
