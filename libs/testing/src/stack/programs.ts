import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { delimiter, join } from 'node:path';

/** The Debian programs the stack runs, and the package that provides each. */
export const DEBIAN_PACKAGE_OF = {
  'redis-server': 'redis-server',
  'docker-registry': 'docker-registry',
  openssl: 'openssl',
  htpasswd: 'apache2-utils',
} as const;

export type StackProgram = keyof typeof DEBIAN_PACKAGE_OF;

/** A Debian program the stack needs is not installed. */
export class MissingProgramError extends Error {
  override readonly name = 'MissingProgramError';
  readonly program: StackProgram;
  constructor(program: StackProgram) {
    super(
      `${program} is not installed (not found on PATH): it comes from the Debian package ` +
        `${DEBIAN_PACKAGE_OF[program]}. Run \`npm run setup\` (tools/setup/install-system-deps.sh) ` +
        `or: sudo apt-get install -y ${DEBIAN_PACKAGE_OF[program]}`,
    );
    this.program = program;
  }
}

const resolved = new Map<string, string>();

/**
 * The absolute path of `program` on `PATH`, or a {@link MissingProgramError} naming its Debian
 * package. Checked before spawning so a missing program fails with that message rather than an
 * `ENOENT` from a shell.
 */
export async function requireProgram(program: StackProgram, path = process.env.PATH ?? ''): Promise<string> {
  const key = `${program}\0${path}`;
  const cached = resolved.get(key);
  if (cached !== undefined) return cached;
  for (const dir of path.split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, program);
    try {
      await access(candidate, constants.X_OK);
      resolved.set(key, candidate);
      return candidate;
    } catch {
      // Not in this PATH entry: keep looking; the error below names the program and package.
    }
  }
  throw new MissingProgramError(program);
}
