import { startRedis, type RedisServer } from './redis.ts';
import {
  startRegistry,
  type BasicRegistryServer,
  type RegistryAuth,
  type RegistryServer,
  type TokenRegistryServer,
} from './registry.ts';
import { startS3, type S3Info, type S3Server } from './s3.ts';

/** A registry's address and credentials: plain data, safe to pass to Vitest workers. */
export interface RegistryInfo {
  readonly auth: RegistryAuth;
  /** `127.0.0.1:PORT` */
  readonly host: string;
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  /** Root of the registry's filesystem storage. */
  readonly storageDir: string;
  readonly username?: string;
  readonly password?: string;
}

export interface BasicRegistryInfo extends RegistryInfo {
  readonly auth: 'basic';
  readonly username: string;
  readonly password: string;
}

export interface TokenRegistryInfo extends RegistryInfo {
  readonly auth: 'token';
  readonly username: string;
  readonly password: string;
  /** The token endpoint. */
  readonly realm: string;
  readonly service: string;
  readonly issuer: string;
}

/** Everything a test needs to reach the stack; serializable (what `inject('stack')` returns). */
export interface StackInfo {
  readonly redis: { readonly url: string; readonly port: number };
  /** No auth. */
  readonly registry: RegistryInfo;
  /** Token auth; anonymous pulls allowed on `public/*`. */
  readonly tokenRegistry: TokenRegistryInfo;
  /** htpasswd Basic auth. */
  readonly basicRegistry: BasicRegistryInfo;
  readonly s3: S3Info;
}

export interface StackOptions {
  /** `expires_in` of the token registry's tokens, seconds. */
  readonly tokenExpiresIn?: number;
}

export interface Stack {
  readonly redis: RedisServer;
  readonly registry: RegistryServer;
  readonly tokenRegistry: TokenRegistryServer;
  readonly basicRegistry: BasicRegistryServer;
  readonly s3: S3Server;
  /** The serializable part. */
  info(): StackInfo;
  /** Stops every server (all of them, even when one fails to stop). Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Redis, a plain registry, a token-auth registry, a Basic-auth registry and S3, started in
 * parallel on free loopback ports. If one fails to start, the others are stopped before the
 * error is thrown.
 */
export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const started = await Promise.allSettled([
    startRedis(),
    startRegistry({ auth: 'none' }),
    startRegistry({
      auth: 'token',
      ...(opts.tokenExpiresIn === undefined ? {} : { tokenExpiresIn: opts.tokenExpiresIn }),
    }),
    startRegistry({ auth: 'basic' }),
    startS3(),
  ] as const);
  const [redis, registry, tokenRegistry, basicRegistry, s3] = started;
  if (
    redis.status === 'rejected' ||
    registry.status === 'rejected' ||
    tokenRegistry.status === 'rejected' ||
    basicRegistry.status === 'rejected' ||
    s3.status === 'rejected'
  ) {
    const failures = started.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    await stopAll(started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : [])));
    throw new AggregateError(failures, `the stack did not start: ${failures.map(String).join('; ')}`);
  }
  const servers = [redis.value, registry.value, tokenRegistry.value, basicRegistry.value, s3.value];
  let stopped: Promise<void> | undefined;
  return {
    redis: redis.value,
    registry: registry.value,
    tokenRegistry: tokenRegistry.value,
    basicRegistry: basicRegistry.value,
    s3: s3.value,
    info: () => ({
      redis: { url: redis.value.url, port: redis.value.port },
      registry: registryInfo(registry.value),
      tokenRegistry: {
        ...registryInfo(tokenRegistry.value),
        auth: 'token',
        username: tokenRegistry.value.username,
        password: tokenRegistry.value.password,
        realm: tokenRegistry.value.realm,
        service: tokenRegistry.value.service,
        issuer: tokenRegistry.value.issuer,
      },
      basicRegistry: {
        ...registryInfo(basicRegistry.value),
        auth: 'basic',
        username: basicRegistry.value.username,
        password: basicRegistry.value.password,
      },
      s3: s3Info(s3.value),
    }),
    stop: () => (stopped ??= stopAll(servers)),
  };
}

function registryInfo(r: RegistryServer): RegistryInfo {
  return {
    auth: r.auth,
    host: r.host,
    url: r.url,
    storageDir: r.storageDir,
    ...(r.username === undefined ? {} : { username: r.username }),
    ...(r.password === undefined ? {} : { password: r.password }),
  };
}

function s3Info(s: S3Server): S3Info {
  return {
    endpoint: s.endpoint,
    region: s.region,
    bucket: s.bucket,
    accessKeyId: s.accessKeyId,
    secretAccessKey: s.secretAccessKey,
    forcePathStyle: s.forcePathStyle,
  };
}

async function stopAll(servers: readonly { stop(): Promise<void> }[]): Promise<void> {
  const results = await Promise.allSettled(servers.map((s) => s.stop()));
  const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  if (failures.length > 0) throw new AggregateError(failures, 'stopping the stack failed');
}
