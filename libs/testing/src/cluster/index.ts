export * from './workers.ts';
