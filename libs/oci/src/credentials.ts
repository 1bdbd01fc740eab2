/**
 * Registry credentials: from Docker's `config.json` (inline `auths`, per-registry `credHelpers`,
 * the default `credsStore`) and from the environment.
 *
 * Environment: `STEVEDORE_REGISTRY_AUTH` holds JSON mapping a registry (as written in references:
 * `docker.io`, `ghcr.io`, `localhost:5000`) to one entry in the shape of a Docker `auths` entry:
 *
 *     {"ghcr.io": {"username": "bot", "password": "…"},
 *      "docker.io": {"auth": "base64(user:password)"},
 *      "registry.example.com": {"identitytoken": "…"}}
 *
 * Credentials never appear in messages, logs or thrown errors: every {@link Credential} made here
 * prints as `[credential]` (JSON and `util.inspect`), and failures name the registry and the source,
 * never the values or the helper's output.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';

/**
 * A secret for one registry: a username and password (Basic, or exchanged at a token server), an
 * OAuth2 refresh token (Docker's `identitytoken`) exchanged at the token server, or a bearer token
 * used as is (Docker's `registrytoken`).
 */
export type Credential =
  | { readonly kind: 'basic'; readonly username: string; readonly password: string }
  | { readonly kind: 'identity-token'; readonly username: string | undefined; readonly token: string }
  | { readonly kind: 'registry-token'; readonly token: string };

/** Looks up the credential of a registry (as written in references, e.g. `docker.io`). */
export interface CredentialStore {
  get(registry: string, signal?: AbortSignal): Promise<Credential | undefined>;
}

const REDACTED = '[credential]';

/** Freezes a credential and makes it print redacted, so a stray log line cannot leak it. */
function seal<C extends Credential>(c: C): C {
  Object.defineProperty(c, 'toJSON', { value: () => REDACTED, enumerable: false });
  Object.defineProperty(c, inspect.custom, { value: () => REDACTED, enumerable: false });
  return Object.freeze(c);
}

export function basicCredential(username: string, password: string): Credential {
  return seal({ kind: 'basic', username, password });
}

export function identityTokenCredential(token: string, username?: string): Credential {
  return seal({ kind: 'identity-token', username, token });
}

export function registryTokenCredential(token: string): Credential {
  return seal({ kind: 'registry-token', token });
}

export class CredentialError extends Error {
  override name = 'CredentialError';
}

/** Every name Docker Hub goes by, mapped to the one used in references. */
const DOCKER_HUB_ALIASES: ReadonlySet<string> = new Set([
  'docker.io',
  'index.docker.io',
  'registry-1.docker.io',
  'registry.hub.docker.com',
]);
/** What docker stores Docker Hub credentials under, and passes to helpers for it. */
export const DOCKER_HUB_SERVER_URL = 'https://index.docker.io/v1/';

/**
 * The registry part of a config key or reference: scheme and path dropped, lowercased, Docker Hub
 * aliases folded to `docker.io` (as docker's `ConvertToHostname`).
 */
export function normalizeRegistry(key: string): string {
  let host = key.trim().toLowerCase();
  const scheme = host.indexOf('://');
  if (scheme >= 0) host = host.slice(scheme + 3);
  const slash = host.indexOf('/');
  if (slash >= 0) host = host.slice(0, slash);
  return DOCKER_HUB_ALIASES.has(host) ? 'docker.io' : host;
}

/** An `auths` entry of Docker's config.json (also the shape of STEVEDORE_REGISTRY_AUTH entries). */
interface AuthEntry {
  auth?: unknown;
  username?: unknown;
  password?: unknown;
  identitytoken?: unknown;
  registrytoken?: unknown;
}

/**
 * Turns an auths entry into a credential. `source` names where it came from in error messages.
 * JSON and base64 decoding errors are not attached as causes: their messages quote the input.
 */
export function credentialFromEntry(entry: unknown, source: string): Credential | undefined {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
    throw new CredentialError(`${source}: expected an object`);
  }
  const e = entry as AuthEntry;
  let username = typeof e.username === 'string' ? e.username : undefined;
  let password = typeof e.password === 'string' ? e.password : undefined;
  if (typeof e.auth === 'string' && e.auth !== '') {
    const decoded = Buffer.from(e.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw new CredentialError(`${source}: "auth" is not base64 of "username:password"`);
    username = decoded.slice(0, colon);
    password = decoded.slice(colon + 1);
  }
  if (typeof e.identitytoken === 'string' && e.identitytoken !== '') {
    return identityTokenCredential(e.identitytoken, username);
  }
  if (typeof e.registrytoken === 'string' && e.registrytoken !== '') {
    return registryTokenCredential(e.registrytoken);
  }
  if (username !== undefined && username !== '' && password !== undefined) {
    return basicCredential(username, password);
  }
  // An entry without secrets: docker writes these for registries whose secret lives in a helper.
  return undefined;
}

/** Finds the entry of `registry` in a map keyed by registry names, URLs or aliases. */
function findEntry<T>(map: Readonly<Record<string, T>>, registry: string): T | undefined {
  if (Object.hasOwn(map, registry)) return map[registry];
  const want = normalizeRegistry(registry);
  for (const [key, value] of Object.entries(map)) {
    if (normalizeRegistry(key) === want) return value;
  }
  return undefined;
}

/** Credentials given in code, keyed by registry. */
export class StaticCredentials implements CredentialStore {
  readonly #byRegistry: ReadonlyMap<string, Credential>;

  constructor(entries: Readonly<Record<string, Credential>>) {
    this.#byRegistry = new Map(Object.entries(entries).map(([k, v]) => [normalizeRegistry(k), v]));
  }

  get(registry: string): Promise<Credential | undefined> {
    return Promise.resolve(this.#byRegistry.get(normalizeRegistry(registry)));
  }
}

/** The environment variable read by {@link EnvCredentials}. */
export const REGISTRY_AUTH_ENV = 'STEVEDORE_REGISTRY_AUTH';

/**
 * Credentials from `STEVEDORE_REGISTRY_AUTH` (see the module comment). Parsed once, on construction:
 * a malformed value fails at startup, naming the variable and the registry, never the value.
 */
export class EnvCredentials implements CredentialStore {
  readonly #inner: StaticCredentials;

  constructor(env: NodeJS.ProcessEnv = process.env) {
    const raw = env[REGISTRY_AUTH_ENV];
    const entries: Record<string, Credential> = {};
    if (raw !== undefined && raw.trim() !== '') {
      let json: unknown;
      try {
        json = JSON.parse(raw);
      } catch {
        // JSON.parse's message quotes the input, which holds secrets: no cause.
        throw new CredentialError(`${REGISTRY_AUTH_ENV} is not valid JSON`);
      }
      if (typeof json !== 'object' || json === null || Array.isArray(json)) {
        throw new CredentialError(`${REGISTRY_AUTH_ENV} must be a JSON object keyed by registry`);
      }
      for (const [registry, entry] of Object.entries(json as Record<string, unknown>)) {
        const credential = credentialFromEntry(entry, `${REGISTRY_AUTH_ENV}["${registry}"]`);
        if (credential === undefined) {
          throw new CredentialError(
            `${REGISTRY_AUTH_ENV}["${registry}"]: needs "username" and "password", "auth" or "identitytoken"`,
          );
        }
        entries[registry] = credential;
      }
    }
    this.#inner = new StaticCredentials(entries);
  }

  get(registry: string): Promise<Credential | undefined> {
    return this.#inner.get(registry);
  }
}

/** How long a credential helper may take before it is killed (helpers may unlock keychains). */
const HELPER_TIMEOUT_MS = 30_000;
/** Largest helper output read: a JSON object with a token. */
const HELPER_MAX_OUTPUT = 1024 * 1024;
/** Helper names become program names: no paths, no options. */
const HELPER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
/** What docker-credential-helpers print (on stdout) for an unknown server. */
const HELPER_NOT_FOUND = /credentials not found/i;
/** The username helpers return when the secret is an identity token. */
const IDENTITY_TOKEN_USERNAME = '<token>';

/**
 * Runs `docker-credential-NAME get` (docker-credential-helpers protocol: the server URL on stdin,
 * `{"ServerURL","Username","Secret"}` on stdout). Returns undefined when the helper has none.
 */
export async function runCredentialHelper(
  name: string,
  serverUrl: string,
  options: { signal?: AbortSignal | undefined; env?: NodeJS.ProcessEnv | undefined } = {},
): Promise<Credential | undefined> {
  const { signal, env } = options;
  if (!HELPER_NAME.test(name)) throw new CredentialError(`invalid credential helper name "${name}"`);
  const program = `docker-credential-${name}`;
  const { stdout, failure } = await new Promise<{ stdout: string; failure: string | undefined }>(
    (resolve, reject) => {
      const child = execFile(
        program,
        ['get'],
        {
          timeout: HELPER_TIMEOUT_MS,
          maxBuffer: HELPER_MAX_OUTPUT,
          encoding: 'utf8',
          ...(signal === undefined ? {} : { signal }),
          ...(env === undefined ? {} : { env }),
        },
        (err, out, errOut) => {
          if (err === null) {
            resolve({ stdout: out, failure: undefined });
            return;
          }
          if (err.name === 'AbortError') {
            reject(signal?.reason instanceof Error ? signal.reason : err);
            return;
          }
          const e = err as { code?: unknown; killed?: boolean };
          let why: string;
          if (e.code === 'ENOENT') why = `${program} not found on PATH`;
          else if (e.killed === true) why = `${program} timed out or was killed`;
          else if (typeof e.code === 'number') why = `${program} exited with code ${String(e.code)}`;
          else why = `${program} failed (${String(e.code)})`;
          // stderr is the helper's diagnostics, never the secret; quote its first line briefly.
          const firstLine = errOut.trim().split('\n')[0]?.slice(0, 200) ?? '';
          resolve({ stdout: out, failure: firstLine === '' ? why : `${why}: ${firstLine}` });
        },
      );
      child.stdin?.end(serverUrl);
    },
  );
  if (failure !== undefined) {
    if (HELPER_NOT_FOUND.test(stdout)) return undefined;
    throw new CredentialError(`credential helper for ${serverUrl}: ${failure}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch {
    // The output holds the secret and JSON.parse quotes it: no cause.
    throw new CredentialError(`credential helper ${program} for ${serverUrl}: output is not JSON`);
  }
  const { Username: username, Secret: secret } = (json ?? {}) as { Username?: unknown; Secret?: unknown };
  if (typeof username !== 'string' || typeof secret !== 'string') {
    throw new CredentialError(`credential helper ${program} for ${serverUrl}: no Username and Secret`);
  }
  if (secret === '') return undefined;
  return username === IDENTITY_TOKEN_USERNAME
    ? identityTokenCredential(secret)
    : basicCredential(username, secret);
}

/** What helpers are asked for: Docker Hub's legacy URL, else the registry's host[:port]. */
export function helperServerUrl(registry: string): string {
  const host = normalizeRegistry(registry);
  return host === 'docker.io' ? DOCKER_HUB_SERVER_URL : host;
}

/** Docker's config file: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. */
export function defaultDockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env['DOCKER_CONFIG'];
  return join(dir !== undefined && dir !== '' ? dir : join(homedir(), '.docker'), 'config.json');
}

interface DockerConfig {
  auths: Record<string, unknown>;
  credHelpers: Record<string, string>;
  credsStore: string | undefined;
}

/**
 * Credentials from Docker's config.json, read lazily once. Order, as docker: a `credHelpers` entry
 * for the registry, else the `credsStore` helper, else the inline `auths` entry. A missing file
 * means no credentials.
 */
export class DockerConfigCredentials implements CredentialStore {
  readonly path: string;
  readonly #env: NodeJS.ProcessEnv | undefined;
  #config: Promise<DockerConfig> | undefined;

  /** `env` locates the config (DOCKER_CONFIG) and is the helpers' environment (PATH). */
  constructor(options: { path?: string; env?: NodeJS.ProcessEnv } = {}) {
    this.path = options.path ?? defaultDockerConfigPath(options.env);
    this.#env = options.env;
  }

  async get(registry: string, signal?: AbortSignal): Promise<Credential | undefined> {
    this.#config ??= this.#load();
    const config = await this.#config;
    const serverUrl = helperServerUrl(registry);
    const helper = findEntry(config.credHelpers, registry);
    const run = { signal, env: this.#env };
    if (helper !== undefined) return runCredentialHelper(helper, serverUrl, run);
    if (config.credsStore !== undefined) {
      const fromStore = await runCredentialHelper(config.credsStore, serverUrl, run);
      if (fromStore !== undefined) return fromStore;
    }
    const entry = findEntry(config.auths, registry);
    return entry === undefined ? undefined : credentialFromEntry(entry, `${this.path} auths["${registry}"]`);
  }

  async #load(): Promise<DockerConfig> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        return { auths: {}, credHelpers: {}, credsStore: undefined };
      }
      throw new CredentialError(`cannot read Docker config ${this.path}`, { cause: err });
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      // The file holds secrets and JSON.parse quotes it: no cause.
      throw new CredentialError(`Docker config ${this.path} is not valid JSON`);
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json)) {
      throw new CredentialError(`Docker config ${this.path} must hold a JSON object`);
    }
    const { auths, credHelpers, credsStore } = json as Record<string, unknown>;
    const helpers: Record<string, string> = {};
    if (typeof credHelpers === 'object' && credHelpers !== null) {
      for (const [k, v] of Object.entries(credHelpers)) if (typeof v === 'string' && v !== '') helpers[k] = v;
    }
    return {
      auths: typeof auths === 'object' && auths !== null ? (auths as Record<string, unknown>) : {},
      credHelpers: helpers,
      credsStore: typeof credsStore === 'string' && credsStore !== '' ? credsStore : undefined,
    };
  }
}

/** Asks each store in turn; the first credential found wins. */
export class ChainedCredentials implements CredentialStore {
  readonly #stores: readonly CredentialStore[];

  constructor(stores: readonly CredentialStore[]) {
    this.#stores = stores;
  }

  async get(registry: string, signal?: AbortSignal): Promise<Credential | undefined> {
    for (const store of this.#stores) {
      const found = await store.get(registry, signal);
      if (found !== undefined) return found;
    }
    return undefined;
  }
}

/** The default lookup: `STEVEDORE_REGISTRY_AUTH` first, then Docker's config.json. */
export function defaultCredentialStore(env: NodeJS.ProcessEnv = process.env): CredentialStore {
  return new ChainedCredentials([new EnvCredentials(env), new DockerConfigCredentials({ env })]);
}
