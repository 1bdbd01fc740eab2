/**
 * Types `inject('stack')` in Vitest tests: any test file that imports `@stevedore/testing` sees
 * this augmentation. The value is provided by `@stevedore/testing/vitest-global-setup`.
 */
import type { StackInfo } from './stack.ts';
// Brings vitest's declarations into every program that includes this file, so the augmentation
// below has a module to augment (erased at run time: the demo and tools never load vitest).
import type {} from 'vitest';

declare module 'vitest' {
  export interface ProvidedContext {
    stack: StackInfo;
  }
}

/** The context the global setup provides. */
export type StackProvidedContext = { readonly stack: StackInfo };
