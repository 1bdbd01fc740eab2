export * from './contract.ts';
export * from './schema.ts';
export * from './options.ts';
export * from './lock-wait.ts';
