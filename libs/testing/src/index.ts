export * from './fixtures/index.ts';
