/**
 * `@stevedore/oci/spec`: the OCI model without the registry client. Digests, media types,
 * references, manifests and indexes, platforms, and the errors they throw.
 *
 * For code that reads and writes images but never talks to a registry: the store, the export, the
 * CLI's store commands. The package's main entry also loads the registry client and undici, which
 * cost every process (and every worker thread) that imports it about 60 ms of start-up and 25 MiB
 * of RSS, measured with Node 24.
 */
export * from './digest.ts';
export * from './media-types.ts';
export * from './reference.ts';
export * from './manifest.ts';
export * from './platform.ts';
export * from './errors.ts';
