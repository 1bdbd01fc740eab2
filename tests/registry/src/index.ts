/**
 * Integration tests of the `@stevedore/oci` registry client against the real distribution
 * registry, its token server and a fault-injecting proxy. Nothing to import: run `vitest`.
 */
export {};
