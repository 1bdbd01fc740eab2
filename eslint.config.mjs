// Type-aware lint for the whole workspace. Module boundaries are enforced by project tags:
//   type:app      may use type:lib and type:testing (tests only)
//   type:lib      may use type:lib only; never an app
//   type:testing  the local stack and fixtures; may use type:lib
//   type:e2e      integration suites that need several projects at once
//   scope:oci     is pure: no Redis, S3 or queue packages
import js from '@eslint/js';
import nx from '@nx/eslint-plugin';
import tseslint from 'typescript-eslint';

/** Nx module boundaries; test files may also use the testing library (the local stack, fixtures). */
function boundaries({ tests }) {
  const testing = tests ? ['type:testing'] : [];
  return {
    allow: [],
    enforceBuildableLibDependency: false,
    depConstraints: [
      { sourceTag: 'type:e2e', onlyDependOnLibsWithTags: ['type:lib', 'type:testing', 'type:app'] },
      { sourceTag: 'type:app', onlyDependOnLibsWithTags: ['type:lib', 'type:testing'] },
      { sourceTag: 'type:tool', onlyDependOnLibsWithTags: ['type:lib', 'type:testing'] },
      { sourceTag: 'type:testing', onlyDependOnLibsWithTags: ['type:lib'] },
      { sourceTag: 'type:lib', onlyDependOnLibsWithTags: ['type:lib', ...testing] },
      {
        sourceTag: 'scope:oci',
        onlyDependOnLibsWithTags: [],
        bannedExternalImports: ['bullmq', 'ioredis', '@aws-sdk/*', 'tar-stream', 'fastify', 'pino'],
      },
    ],
  };
}

export default tseslint.config(
  { ignores: ['**/node_modules/**', '**/dist/**', '**/.nx/**', '**/coverage/**', '**/test-artifacts/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { '@nx': nx },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': [
        'error',
        { considerDefaultExhaustiveForUnions: true, requireDefaultForNonUnion: false },
      ],
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
      '@nx/enforce-module-boundaries': ['error', boundaries({ tests: false })],
    },
  },
  {
    files: ['**/*.test.ts', '**/test/**/*.ts', '**/vitest.config.ts'],
    rules: { '@nx/enforce-module-boundaries': ['error', boundaries({ tests: true })] },
  },
  {
    files: ['**/*.mjs', '**/*.js', '**/*.cjs'],
    ...tseslint.configs.disableTypeChecked,
  },
);
