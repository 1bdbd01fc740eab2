import { describe, expect, it } from 'vitest';
import { DEBIAN_PACKAGE_OF, MissingProgramError, requireProgram, type StackProgram } from './programs.ts';

describe('requireProgram', () => {
  it.each(Object.keys(DEBIAN_PACKAGE_OF) as StackProgram[])('finds %s on PATH', async (program) => {
    expect(await requireProgram(program)).toMatch(new RegExp(`/${program}$`));
  });

  it.each([
    ['redis-server', 'redis-server'],
    ['docker-registry', 'docker-registry'],
    ['openssl', 'openssl'],
    ['htpasswd', 'apache2-utils'],
  ] as const)(
    'names the Debian package of a missing %s and points to npm run setup',
    async (program, pkg) => {
      const err = await requireProgram(program, '/nonexistent').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MissingProgramError);
      expect((err as Error).message).toBe(
        `${program} is not installed (not found on PATH): it comes from the Debian package ${pkg}. ` +
          `Run \`npm run setup\` (tools/setup/install-system-deps.sh) or: sudo apt-get install -y ${pkg}`,
      );
    },
  );
});
