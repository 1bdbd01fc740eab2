import root from '../../eslint.config.mjs';

export default [
  ...root,
  {
    // The benchmark builds its image with the test fixtures, as tests do (libs/store's benchmark
    // generates its own data instead; ours needs real image trees).
    files: ['bench/**/*.ts'],
    rules: {
      '@nx/enforce-module-boundaries': [
        'error',
        {
          allow: [],
          enforceBuildableLibDependency: false,
          depConstraints: [{ sourceTag: 'type:lib', onlyDependOnLibsWithTags: ['type:lib', 'type:testing'] }],
        },
      ],
    },
  },
];
