export * from './catalogue.ts';
export * from './fields.ts';
export * from './redis-metrics.ts';
export * from './reader.ts';
export * from './prometheus.ts';
