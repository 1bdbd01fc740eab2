/**
 * The configuration file of the CNCF distribution registry 2.8, generated per start (never
 * Debian's /etc/docker/registry/config.yml, which turns on htpasswd auth). Reference:
 * https://distribution.github.io/distribution/about/configuration/
 */

export type RegistryAuthConfig =
  | { readonly kind: 'none' }
  | { readonly kind: 'basic'; readonly realm: string; readonly htpasswdPath: string }
  | {
      readonly kind: 'token';
      readonly realm: string;
      readonly service: string;
      readonly issuer: string;
      readonly rootCertBundle: string;
    };

export interface RegistryConfigInput {
  readonly port: number;
  readonly rootDirectory: string;
  /** `http.secret`: signs upload state; random per start. */
  readonly secret: string;
  readonly auth: RegistryAuthConfig;
}

type YamlValue = string | number | boolean | readonly string[] | YamlMap;
interface YamlMap {
  readonly [key: string]: YamlValue;
}

/** The registry config as a plain object (what {@link registryConfigYaml} serializes). */
export function registryConfig(input: RegistryConfigInput): YamlMap {
  return {
    version: '0.1',
    log: { level: 'info', formatter: 'text', accesslog: { disabled: false } },
    storage: {
      filesystem: { rootdirectory: input.rootDirectory },
      delete: { enabled: true },
      // The purge of stale uploads runs on a timer; a test registry lives minutes.
      maintenance: { uploadpurging: { enabled: false } },
      redirect: { disable: true },
    },
    http: {
      addr: `127.0.0.1:${input.port}`,
      secret: input.secret,
      headers: { 'X-Content-Type-Options': ['nosniff'] },
    },
    // No `http.debug`: the debug server stays off. The storage health check would poll the disk.
    health: { storagedriver: { enabled: false } },
    ...authSection(input.auth),
  };
}

function authSection(auth: RegistryAuthConfig): YamlMap {
  switch (auth.kind) {
    case 'none':
      return {};
    case 'basic':
      return { auth: { htpasswd: { realm: auth.realm, path: auth.htpasswdPath } } };
    case 'token':
      return {
        auth: {
          token: {
            realm: auth.realm,
            service: auth.service,
            issuer: auth.issuer,
            rootcertbundle: auth.rootCertBundle,
          },
        },
      };
  }
}

export function registryConfigYaml(input: RegistryConfigInput): string {
  return toYaml(registryConfig(input), '');
}

/**
 * A minimal YAML emitter for nested maps of scalars and string lists. Strings are written as
 * JSON strings, which YAML reads as double-quoted scalars, so no value needs escaping rules of
 * its own.
 */
export function toYaml(map: YamlMap, indent: string): string {
  let out = '';
  for (const [key, value] of Object.entries(map)) {
    const k = /^[A-Za-z0-9_.-]+$/.test(key) ? key : JSON.stringify(key);
    if (typeof value === 'string') out += `${indent}${k}: ${JSON.stringify(value)}\n`;
    else if (typeof value === 'number' || typeof value === 'boolean')
      out += `${indent}${k}: ${String(value)}\n`;
    else if (isStringList(value))
      out += `${indent}${k}: [${value.map((v) => JSON.stringify(v)).join(', ')}]\n`;
    else out += `${indent}${k}:\n${toYaml(value, `${indent}  `)}`;
  }
  return out;
}

function isStringList(value: readonly string[] | YamlMap): value is readonly string[] {
  return Array.isArray(value);
}
