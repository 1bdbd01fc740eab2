#!/usr/bin/env node
// The stevedore command. Plain JavaScript, so loading it strips no types: it turns on Node's
// compile cache (NODE_COMPILE_CACHE, or node-compile-cache under the temp dir), then loads the
// TypeScript CLI. With the cache warm, every module comes out of it already stripped and the
// process never loads Node's TypeScript stripper (a WebAssembly module: 30 MiB of RSS measured in
// a process that loads the store). The first run fills the cache: it is written shortly after the
// start (and at exit), so a long-running worker fills it too.
import { enableCompileCache, flushCompileCache } from 'node:module';
import { setTimeout } from 'node:timers';

/** After this long the modules a command needs are loaded; the cache is written then. */
const FLUSH_AFTER_MS = 3000;

enableCompileCache();
setTimeout(flushCompileCache, FLUSH_AFTER_MS).unref();
await import('../src/main.ts');
