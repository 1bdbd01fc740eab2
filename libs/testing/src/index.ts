export * from './stack/index.ts';
export * from './fixtures/index.ts';
export * from './cluster/index.ts';
