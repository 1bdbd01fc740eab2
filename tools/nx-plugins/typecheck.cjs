// Infers a `typecheck` target (`tsc --noEmit`) for every project with a tsconfig.json.
// @nx/js/typescript insists on emitting declarations through project references; stevedore
// runs its TypeScript sources directly on Node 24 (type stripping), so there is nothing to emit.
const { dirname } = require('node:path');

/** @type {import('@nx/devkit').CreateNodesV2} */
exports.createNodesV2 = [
  '{apps,libs,tools,tests}/*/tsconfig.json',
  (configFiles) =>
    configFiles.map((file) => {
      const root = dirname(file);
      return [
        file,
        {
          projects: {
            [root]: {
              targets: {
                typecheck: {
                  command: 'tsc -p tsconfig.json',
                  options: { cwd: root },
                  cache: true,
                  inputs: ['default', '^default', { externalDependencies: ['typescript'] }],
                  outputs: [],
                },
              },
            },
          },
        },
      ];
    }),
];
