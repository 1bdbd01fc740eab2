import { describe, expect, it } from 'vitest';
import { registryConfigYaml, toYaml } from './registry-config.ts';

describe('registryConfigYaml', () => {
  it('writes the token configuration', () => {
    expect(
      registryConfigYaml({
        port: 5000,
        rootDirectory: '/tmp/r/storage',
        secret: 'abc',
        auth: {
          kind: 'token',
          realm: 'http://127.0.0.1:6000/token',
          service: 'svc',
          issuer: 'iss',
          rootCertBundle: '/tmp/r/cert.pem',
        },
      }),
    ).toBe(
      [
        'version: "0.1"',
        'log:',
        '  level: "info"',
        '  formatter: "text"',
        '  accesslog:',
        '    disabled: false',
        'storage:',
        '  filesystem:',
        '    rootdirectory: "/tmp/r/storage"',
        '  delete:',
        '    enabled: true',
        '  maintenance:',
        '    uploadpurging:',
        '      enabled: false',
        '  redirect:',
        '    disable: true',
        'http:',
        '  addr: "127.0.0.1:5000"',
        '  secret: "abc"',
        '  headers:',
        '    X-Content-Type-Options: ["nosniff"]',
        'health:',
        '  storagedriver:',
        '    enabled: false',
        'auth:',
        '  token:',
        '    realm: "http://127.0.0.1:6000/token"',
        '    service: "svc"',
        '    issuer: "iss"',
        '    rootcertbundle: "/tmp/r/cert.pem"',
        '',
      ].join('\n'),
    );
  });

  it.each([
    [{ kind: 'none' } as const, ''],
    [
      { kind: 'basic', realm: 'r', htpasswdPath: '/p/htpasswd' } as const,
      'auth:\n  htpasswd:\n    realm: "r"\n    path: "/p/htpasswd"\n',
    ],
  ])('auth %o', (auth, section) => {
    const yaml = registryConfigYaml({ port: 1, rootDirectory: '/d', secret: 's', auth });
    expect(
      yaml.slice(
        yaml.indexOf('    enabled: false\n', yaml.indexOf('health:')) + '    enabled: false\n'.length,
      ),
    ).toBe(section);
  });
});

describe('toYaml', () => {
  it.each([
    [{ a: 'x"y' }, 'a: "x\\"y"\n'],
    [{ 'needs quoting': 1 }, '"needs quoting": 1\n'],
    [{ list: ['a', 'b'] }, 'list: ["a", "b"]\n'],
    [{ n: { m: true } }, 'n:\n  m: true\n'],
  ])('%o', (map, yaml) => {
    expect(toYaml(map, '')).toBe(yaml);
  });
});
