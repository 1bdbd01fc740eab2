import { describe, expect, it } from 'vitest';
import { isIgnored, parseDockerignore } from './dockerignore.ts';

const ALLOW_LIST = `
# comment
*
!apps
!tools/*/package.json
**/node_modules
**/*.test.ts
`;

describe('isIgnored', () => {
  it.each([
    // [rules, path, ignored]
    [ALLOW_LIST, 'package.json', true],
    [ALLOW_LIST, 'apps/api/src/main.ts', false],
    [ALLOW_LIST, 'apps/api/src/main.test.ts', true],
    [ALLOW_LIST, 'apps/api/node_modules/x/index.js', true],
    [ALLOW_LIST, 'tools/stack/package.json', false],
    [ALLOW_LIST, 'tools/stack/src/main.ts', true],
    [ALLOW_LIST, 'tools/package.json', true],
    [ALLOW_LIST, 'node_modules/bullmq/package.json', true],
    ['node_modules\n', 'node_modules/x', true],
    ['node_modules\n', 'libs/node_modules/x', false],
    ['/node_modules\n', 'node_modules/x', true],
    ['**/.git\n', '.git/HEAD', true],
    ['docs/**/*.md\n', 'docs/a/b/c.md', true],
    ['docs/**/*.md\n', 'docs/c.md', true],
    ['docs/*.md\n', 'docs/a/c.md', false],
    ['file?.txt\n', 'file1.txt', true],
    ['file?.txt\n', 'file10.txt', false],
    ['a.b\n', 'axb', false],
    ['*\n!a\na/b\n!a/b/keep\n', 'a/b/keep', false],
    ['*\n!a\na/b\n!a/b/keep\n', 'a/b/other', true],
    ['', 'anything', false],
  ])('%j: %s ignored=%s', (rules, path, ignored) => {
    expect(isIgnored(parseDockerignore(rules), path)).toBe(ignored);
  });

  it('keeps the patterns as written, cleaned', () => {
    expect(
      parseDockerignore('# c\n\n/a/./b/\n!c\n').map(({ pattern, include }) => ({ pattern, include })),
    ).toEqual([
      { pattern: 'a/b', include: false },
      { pattern: 'c', include: true },
    ]);
  });
});
