/**
 * Types `inject('stack')` in Vitest tests: any test file that imports `@stevedore/testing` sees
 * this augmentation. The value is provided by `@stevedore/testing/vitest-global-setup`.
 */
import type { StackInfo } from './stack.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    stack: StackInfo;
  }
}

/** The context the global setup provides. */
export type StackProvidedContext = { readonly stack: StackInfo };
