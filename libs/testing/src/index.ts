export * from './stack/index.ts';
export * from './fixtures/index.ts';
