import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { spawnManaged, type ManagedProcess } from './process.ts';
import { AddressInUseError, LOOPBACK, retryOnAddressInUse } from './ports.ts';
import { requireProgram } from './programs.ts';
import { registryConfigYaml, type RegistryAuthConfig } from './registry-config.ts';
import { makeTempDir, removeTempDir } from './temp-dir.ts';
import { startTokenServer, type TokenRequestRecord, type TokenServer } from './token-server.ts';

const run = promisify(execFile);

export type RegistryAuth = 'none' | 'token' | 'basic';

export interface RegistryOptions {
  readonly auth?: RegistryAuth;
  /** Credentials of the auth registries; generated per start when absent. */
  readonly username?: string;
  readonly password?: string;
  /** `expires_in` of tokens from the token server, seconds (token auth only). */
  readonly tokenExpiresIn?: number;
}

export interface RegistryServer {
  readonly auth: RegistryAuth;
  /** `127.0.0.1:PORT`, the registry part of image references. */
  readonly host: string;
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  /** The docker-registry pid (also its process group id). */
  readonly pid: number;
  /** Root of the registry's filesystem storage (removed by stop()); failure tests may corrupt blobs here. */
  readonly storageDir: string;
  readonly username?: string;
  readonly password?: string;
  /** What the registry printed: its log (stderr) and access log (stdout), the last 4 MiB. */
  logs(): string;
  /** Kills the registry (and its token server), removes its storage. Safe to call twice. */
  stop(): Promise<void>;
}

export interface BasicRegistryServer extends RegistryServer {
  readonly auth: 'basic';
  readonly username: string;
  readonly password: string;
}

export interface TokenRegistryServer extends RegistryServer {
  readonly auth: 'token';
  readonly username: string;
  readonly password: string;
  /** The token endpoint, `http://127.0.0.1:PORT/token`. */
  readonly realm: string;
  readonly service: string;
  readonly issuer: string;
  /** Requests the token server received (all outcomes), so tests can assert token caching. */
  tokenRequests(): number;
  tokenRequestLog(): readonly TokenRequestRecord[];
}

/** The `service` of the token registry's challenge and the audience of its tokens. */
export const TOKEN_SERVICE = 'stevedore-test-registry';
export const TOKEN_ISSUER = 'stevedore-test-token-issuer';
/** Default `expires_in`: docker's token spec default (60 s) would expire mid-suite on a slow box. */
export const DEFAULT_TOKEN_EXPIRES_IN = 300;
const BASIC_REALM = 'stevedore test registry';
const DEFAULT_USERNAME = 'stevedore';
/** Validity of the token-signing certificate; a stack lives for one test run. */
const CERT_VALIDITY_DAYS = 2;
const ADDRESS_IN_USE = /address already in use/i;
/** Random bytes of `http.secret`, which signs upload state between requests. */
const HTTP_SECRET_BYTES = 16;

/**
 * The CNCF distribution registry 2.8 (`docker-registry serve CONFIG`) on a free loopback port,
 * filesystem storage in a temp dir, deletes enabled, no TLS, debug server off.
 *
 * - `auth: 'basic'`: htpasswd (bcrypt, `htpasswd -Bbn`) with generated credentials. distribution
 *   2.8 accepts it over plain HTTP: only its docs warn that Basic credentials travel in clear
 *   text without TLS; the code does not require TLS (checked: 401 + `Basic realm` without
 *   credentials, 200 with them).
 * - `auth: 'token'`: `auth.token` trusting a self-signed EC certificate made by openssl, and a
 *   token server in this process ({@link startTokenServer}).
 */
export async function startRegistry(
  opts: RegistryOptions & { readonly auth: 'token' },
): Promise<TokenRegistryServer>;
export async function startRegistry(
  opts: RegistryOptions & { readonly auth: 'basic' },
): Promise<BasicRegistryServer>;
export async function startRegistry(opts?: RegistryOptions): Promise<RegistryServer>;
export async function startRegistry(opts: RegistryOptions = {}): Promise<RegistryServer> {
  const auth = opts.auth ?? 'none';
  const program = await requireProgram('docker-registry');
  const dir = await makeTempDir(`registry-${auth}`);
  const cleanups: (() => Promise<void>)[] = [() => removeTempDir(dir)];
  const cleanup = async (): Promise<void> => {
    const errors: unknown[] = [];
    for (const fn of cleanups.reverse()) await fn().catch((err: unknown) => errors.push(err));
    if (errors.length > 0) throw new AggregateError(errors, `cleanup of registry in ${dir} failed`);
  };
  try {
    const username = opts.username ?? DEFAULT_USERNAME;
    const password = opts.password ?? randomBytes(12).toString('hex');
    let authConfig: RegistryAuthConfig = { kind: 'none' };
    let tokenServer: TokenServer | undefined;
    switch (auth) {
      case 'none':
        break;
      case 'basic': {
        const htpasswdPath = join(dir, 'htpasswd');
        await writeFile(htpasswdPath, await htpasswdLine(username, password), { mode: 0o600 });
        authConfig = { kind: 'basic', realm: BASIC_REALM, htpasswdPath };
        break;
      }
      case 'token': {
        const { keyPath, certPath } = await makeSigningCertificate(dir);
        const server = await startTokenServer({
          service: TOKEN_SERVICE,
          issuer: TOKEN_ISSUER,
          username,
          password,
          expiresIn: opts.tokenExpiresIn ?? DEFAULT_TOKEN_EXPIRES_IN,
          keyPath,
          certPath,
        });
        tokenServer = server;
        cleanups.push(() => server.stop());
        authConfig = {
          kind: 'token',
          realm: server.realm,
          service: TOKEN_SERVICE,
          issuer: TOKEN_ISSUER,
          rootCertBundle: certPath,
        };
        break;
      }
    }
    const rootDirectory = join(dir, 'storage');
    await mkdir(rootDirectory);

    const proc = await retryOnAddressInUse('docker-registry', (port) =>
      serveRegistry(program, { port, dir, rootDirectory, auth: authConfig }),
    );
    cleanups.push(() => proc.proc.stop());

    let stopped: Promise<void> | undefined;
    const host = `${LOOPBACK}:${proc.port}`;
    const base: RegistryServer = {
      auth,
      host,
      url: `http://${host}`,
      pid: proc.proc.pid,
      storageDir: rootDirectory,
      logs: proc.proc.output,
      stop: () => (stopped ??= cleanup()),
      ...(auth === 'none' ? {} : { username, password }),
    };
    if (tokenServer === undefined) return base;
    const ts = tokenServer;
    const token: TokenRegistryServer = {
      ...base,
      auth: 'token',
      username,
      password,
      realm: ts.realm,
      service: TOKEN_SERVICE,
      issuer: TOKEN_ISSUER,
      tokenRequests: () => ts.tokenRequests(),
      tokenRequestLog: () => ts.tokenRequestLog(),
    };
    return token;
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/**
 * `docker-registry serve` on `port` with a generated config in `dir`; {@link AddressInUseError}
 * when that port is taken. Exported for tests, not from the package.
 */
export async function serveRegistry(
  program: string,
  opts: { port: number; dir: string; rootDirectory: string; auth: RegistryAuthConfig },
): Promise<{ proc: ManagedProcess; port: number }> {
  const { port, dir } = opts;
  const configPath = join(dir, 'config.yml');
  const secret = randomBytes(HTTP_SECRET_BYTES).toString('hex');
  await writeFile(
    configPath,
    registryConfigYaml({ port, rootDirectory: opts.rootDirectory, secret, auth: opts.auth }),
  );
  const proc = spawnManaged(program, ['serve', configPath], {
    name: `docker-registry (${opts.auth.kind}) on port ${port}`,
    cwd: dir,
  });
  try {
    await proc.waitForOutput(new RegExp(`listening on 127\\.0\\.0\\.1:${port}\\b`));
  } catch (err) {
    await proc.stop();
    if (ADDRESS_IN_USE.test(proc.output()))
      throw new AddressInUseError(`registry port ${port} taken`, { cause: err });
    throw err;
  }
  return { proc, port };
}

/** One htpasswd line, bcrypt (the only hash distribution accepts), via `htpasswd -Bbn`. */
async function htpasswdLine(username: string, password: string): Promise<string> {
  const htpasswd = await requireProgram('htpasswd');
  try {
    const { stdout } = await run(htpasswd, ['-Bbn', username, password]);
    return stdout;
  } catch (err) {
    // execFile's error repeats the command line, which holds the password: keep only its
    // exit code and stderr.
    const { code, stderr } = err as { code?: unknown; stderr?: unknown };
    throw new Error(
      `htpasswd -Bbn failed for user ${username} (exit ${String(code)}): ${String(stderr).trim()}`,
    );
  }
}

/** A self-signed EC P-256 certificate and key that the registry trusts to sign tokens. */
async function makeSigningCertificate(dir: string): Promise<{ keyPath: string; certPath: string }> {
  const openssl = await requireProgram('openssl');
  const keyPath = join(dir, 'token-signing.key.pem');
  const certPath = join(dir, 'token-signing.cert.pem');
  // prettier-ignore
  await run(openssl, [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', keyPath, '-out', certPath, '-days', String(CERT_VALIDITY_DAYS), '-subj', `/CN=${TOKEN_ISSUER}`,
  ]);
  return { keyPath, certPath };
}
