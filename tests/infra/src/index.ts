/** Helpers of the infra checks, for other suites that render or read the manifests. */
export * from './dockerfile.ts';
export * from './dockerignore.ts';
export * from './k8s.ts';
export * from './kustomize.ts';
export * from './promql.ts';
export * from './quantity.ts';
export * from './repo.ts';
export * from './validate.ts';
