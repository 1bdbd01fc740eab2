#!/usr/bin/env node
/**
 * stevedore: the command line. Parses arguments and dispatches; the work is in the libraries.
 * Exit codes: 0 success, 1 the operation failed (the reason on stderr), 2 bad usage.
 */
import { parseArgs } from 'node:util';

// Each command's module is loaded when the command runs: `stevedore export` does not load the
// queue clients, nor `stevedore pull` the store.

const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

const HELP: Readonly<Record<string, string>> = {
  '': `usage: stevedore <command> [options]

Pull container images into a deduplicated, content-addressed store, and pack them back out.

commands:
  pull REF        queue a pull of REF (--wait to follow it to the end)
  images          list the images in the store
  inspect REF     show an image: manifest, config, layers and what they take in the store
  rm REF...       remove references (the content stays until stevedore gc)
  compact         store maintenance: merge index files, delete crash leftovers and old exports
  gc              delete what no reference reaches, rewrite packs that are mostly garbage
  verify [REF...] check the store end to end: records, blobs, every layer rebuilt to its diffID
  export REF...   write images as a docker or OCI archive (-o FILE, or -o - for stdout)
  worker ROLE     run pipeline workers: fetcher, hasher, committer or all
  api             run the HTTP API (with Bull Board at /admin/queues)
  stack           run Redis, all workers and the API on this machine

Run 'stevedore COMMAND --help' for a command's options.
Configuration comes from the environment: STEVEDORE_REDIS_URL (default ${DEFAULT_REDIS_URL}),
STEVEDORE_STORE (a directory, or s3://bucket/prefix); see docs/configuration.md.
`,
  pull: `usage: stevedore pull REF [--platform os/arch[/variant]|all] [--wait] [--json]

Queues a pull of REF and prints its id. With --wait, follows it: a bar per layer on a terminal
(fetched, reused, or waited for another worker's transfer), plain lines otherwise, and exits 1
with the reason if the pull fails. --platform defaults to this machine's platform.
`,
  images: `usage: stevedore images [--json]

Lists the references in the store with their digest, platforms, layers and size: tags, and
REGISTRY/REPO@sha256:… for images pulled by digest.
`,
  inspect:
    'usage: stevedore inspect REF\n\nPrints an image as JSON: manifest, config, layers, and what each layer takes in the store.\n',
  rm: `usage: stevedore rm REF...

Removes references: tags (REGISTRY/REPO:TAG), or the digest reference a pull by digest keeps
(REGISTRY/REPO@sha256:…). The images stay until garbage collection. Exits 1 if one of them does not
exist.
`,
  compact: `usage: stevedore compact [--min-age DURATION] [--orphan-age DURATION]
       [--export-age DURATION|never] [--json]

Store maintenance, safe while workers pull and export (the Kubernetes base runs it daily):
  - merges the index files (one per import) older than --min-age (default 10m) into a few, so a
    process opening the store loads a few files instead of one per import;
  - deletes what crashed imports left behind once older than --orphan-age (default 24h; it must
    exceed the longest import): packs no index file lists, splitstreams no layer names, and a
    directory store's temporary files;
  - deletes the archives export jobs stored (POST /v1/exports) once older than --export-age
    (default 7d; never: keep them), and archives an export job left without a record once older
    than --orphan-age. An expired export requested again is written again.
Durations: a number and s, m, h or d. Images, layers and their files are not touched.
`,
  gc: `usage: stevedore gc [--dry-run] [--repack-below FRACTION] [--drain-timeout DURATION] [--json]

Garbage collection: deletes the images, layers, blobs and splitstreams no reference reaches (after
'stevedore rm'), deletes packs none of whose objects a live layer uses, and rewrites packs whose
live objects take less than --repack-below of their bytes (default 0.5; 0: never rewrite), copying
those objects as they are stored. Needs the Redis the workers use (STEVEDORE_REDIS_URL): it closes
a gate that every job waits behind, waits for the active jobs and the store's readers (API
downloads, stevedore export and verify) to finish (at most --drain-timeout, default 10m), keeps
every digest a queued or failed job names (failed jobs stay a week, to be retried), collects, and
opens the gate. Pulls and exports pause meanwhile (export and verify commands wait, API downloads
are refused with 503); references and images that are kept are never touched.
  --dry-run   report what would be deleted and rewritten, change nothing
Exits 1 when another gc or a compaction is running, jobs or readers stay past the timeout, Redis is
unreachable, or the store is damaged (records collected, packs left alone: run stevedore verify).
`,
  verify: `usage: stevedore verify [REF...] [--json]

Reads back what the store holds and checks it: each reference points at a stored image, each image's
manifest and config blobs are there, every blob read is hashed, and every layer is rebuilt from its
objects and checked against its diffID. With REF..., only what those references reach; without,
everything in the store. Changes nothing (safe while workers pull). A stevedore gc waits for it to
end, and it waits while a gc runs (through the Redis of STEVEDORE_REDIS_URL; without Redis it runs
unguarded and says so). Exits 1 when a problem is found, printing each one.
`,
  export: `usage: stevedore export REF... -o FILE|- [--format docker|oci]
       [--compression original|none|gzip|zstd] [--archive-compression none|gzip|zstd]
       [--platform os/arch[/variant]|all]

Writes the images REF... point at as one archive, streamed from the store in one pass; layers
shared by several images are written once. FILE is written under a temporary name and renamed
once complete; '-o -' writes to stdout (not to a terminal).

  --format docker       what 'docker load' and 'podman load' read (manifest.json, RepoTags); default
  --format oci          an OCI image layout (index.json with org.opencontainers.image.ref.name)
  --compression         layers as pulled (original: needs the keep blob policy; the default then),
                        plain tars (none), or recompressed (gzip, the default with the drop policy;
                        zstd). A layer's first gzip/zstd export compresses it twice (once to size it);
                        later exports are one pass. See docs/export.md.
  --archive-compression the whole archive; default from FILE's suffix (.tar.gz/.tgz, .tar.zst)
  --platform            for multi-platform images: one platform, or all (OCI only); default: all
                        stored platforms (oci), the only or this machine's platform (docker)

A stevedore gc waits for the export to end, and the export waits while a gc runs (as verify).
Exits 1 when a reference is not in the store, an image is not fully committed, or the export
fails (no file is left under FILE), 2 on bad usage.
`,
  worker:
    'usage: stevedore worker fetcher|hasher|committer|all\n\nRuns pipeline workers until SIGTERM, then finishes the active jobs and exits.\n',
  api: 'usage: stevedore api\n\nRuns the HTTP API (STEVEDORE_API_TOKEN is required). The API never runs workers.\n',
  stack: `usage: stevedore stack [--compact-every DURATION|never]

Runs everything on this machine: Redis (a private redis-server, data in .stevedore/redis, unless
STEVEDORE_REDIS_URL is set), all workers, and the API, on the directory store .stevedore/store.
Prints the API and Bull Board addresses and credentials. Ctrl-C stops it.
Runs 'stevedore compact' (store maintenance) every --compact-every (default 24h, at most 24d),
the first time 15 minutes after it starts (or sooner, for a shorter period); never: not at all.
`,
};

function usageError(command: string, message: string): number {
  process.stderr.write(`stevedore ${command}: ${message}\n${HELP[command] ?? HELP['']}`);
  return 2;
}

const OPTIONS = {
  platform: { type: 'string' },
  wait: { type: 'boolean' },
  json: { type: 'boolean' },
  output: { type: 'string', short: 'o' },
  format: { type: 'string' },
  compression: { type: 'string' },
  'archive-compression': { type: 'string' },
  'min-age': { type: 'string' },
  'orphan-age': { type: 'string' },
  'export-age': { type: 'string' },
  'compact-every': { type: 'string' },
  'dry-run': { type: 'boolean' },
  'repack-below': { type: 'string' },
  'drain-timeout': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

async function main(argv: readonly string[]): Promise<number> {
  const [command = '', ...rest] = argv;
  const redisUrl = process.env.STEVEDORE_REDIS_URL ?? DEFAULT_REDIS_URL;
  if (command === '' || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(HELP[''] ?? '');
    return command === '' ? 2 : 0;
  }
  if (!(command in HELP)) {
    process.stderr.write(`stevedore: unknown command "${command}"\n${HELP[''] ?? ''}`);
    return 2;
  }
  let parsed;
  try {
    parsed = parseArgs({ args: [...rest], allowPositionals: true, options: OPTIONS });
  } catch (err) {
    return usageError(command, err instanceof Error ? err.message : String(err));
  }
  const { values, positionals } = parsed;
  if (values.help === true) {
    process.stdout.write(HELP[command] ?? '');
    return 0;
  }
  const json = values.json === true;
  switch (command) {
    case 'pull': {
      const ref = positionals[0];
      if (ref === undefined || positionals.length > 1)
        return usageError(command, 'expected exactly one image reference');
      const { pullCommand } = await import('./commands/pull.ts');
      return pullCommand({ ref, platform: values.platform, wait: values.wait === true, json, redisUrl });
    }
    case 'images': {
      const { imagesCommand } = await import('./commands/images.ts');
      return imagesCommand(json);
    }
    case 'inspect': {
      const ref = positionals[0];
      if (ref === undefined || positionals.length > 1)
        return usageError(command, 'expected exactly one image reference');
      const { inspectCommand } = await import('./commands/images.ts');
      return inspectCommand(ref);
    }
    case 'rm': {
      if (positionals.length === 0) return usageError(command, 'expected at least one image reference');
      const { rmCommand } = await import('./commands/images.ts');
      return rmCommand(positionals);
    }
    case 'compact': {
      if (positionals.length > 0) return usageError(command, 'takes no arguments');
      const { compactCommand, parseDuration } = await import('./commands/compact.ts');
      const ages: Record<string, number | undefined> = {};
      for (const flag of ['min-age', 'orphan-age', 'export-age'] as const) {
        const text = values[flag];
        if (text === undefined) continue;
        ages[flag] = flag === 'export-age' && text === 'never' ? Infinity : parseDuration(text);
        if (ages[flag] === undefined) {
          const also = flag === 'export-age' ? ' (or never)' : '';
          return usageError(
            command,
            `--${flag}: expected a duration like 30s, 10m, 2h or 7d${also}, got "${text}"`,
          );
        }
      }
      return compactCommand({
        minAgeMs: ages['min-age'],
        orphanAgeMs: ages['orphan-age'],
        exportAgeMs: ages['export-age'],
        json,
        redisUrl,
      });
    }
    case 'gc': {
      if (positionals.length > 0) return usageError(command, 'takes no arguments');
      const { parseDuration } = await import('./commands/compact.ts');
      const { gcCommand } = await import('./commands/gc.ts');
      let repackBelow: number | undefined;
      if (values['repack-below'] !== undefined) {
        repackBelow = Number(values['repack-below']);
        if (!/^(0|1|0?\.\d+|1\.0+)$/.test(values['repack-below']))
          return usageError(
            command,
            `--repack-below: expected a fraction from 0 to 1, got "${values['repack-below']}"`,
          );
      }
      let drainTimeoutMs: number | undefined;
      if (values['drain-timeout'] !== undefined) {
        drainTimeoutMs = parseDuration(values['drain-timeout']);
        if (drainTimeoutMs === undefined)
          return usageError(
            command,
            `--drain-timeout: expected a duration like 30s, 10m or 2h, got "${values['drain-timeout']}"`,
          );
      }
      return gcCommand({ dryRun: values['dry-run'] === true, repackBelow, drainTimeoutMs, json, redisUrl });
    }
    case 'verify': {
      const { verifyCommand, VerifyUsageError } = await import('./commands/verify.ts');
      try {
        return await verifyCommand({ refs: positionals, json, redisUrl });
      } catch (err) {
        if (err instanceof VerifyUsageError) return usageError(command, err.message);
        throw err;
      }
    }
    case 'export': {
      if (positionals.length === 0) return usageError(command, 'expected at least one image reference');
      if (values.output === undefined) return usageError(command, 'missing -o FILE (or -o - for stdout)');
      const { exportCommand, ExportUsageError } = await import('./commands/export.ts');
      try {
        return await exportCommand({
          refs: positionals,
          output: values.output,
          format: values.format,
          compression: values.compression,
          archiveCompression: values['archive-compression'],
          platform: values.platform,
          redisUrl,
        });
      } catch (err) {
        if (err instanceof ExportUsageError) return usageError(command, err.message);
        throw err;
      }
    }
    case 'worker': {
      const { runWorkers } = await import('./commands/worker.ts');
      return runWorkers(positionals);
    }
    case 'api': {
      const { apiCommand } = await import('./commands/services.ts');
      return apiCommand();
    }
    case 'stack': {
      if (positionals.length > 0) return usageError(command, 'takes no arguments');
      const every = values['compact-every'];
      let compactEveryMs: number | undefined;
      if (every !== undefined) {
        const { parseDuration } = await import('./commands/compact.ts');
        compactEveryMs = every === 'never' ? Infinity : parseDuration(every);
        // Node's timers hold at most 2^31-1 ms (24.8 days); longer ones fire at once.
        if (
          compactEveryMs === undefined ||
          compactEveryMs === 0 ||
          (Number.isFinite(compactEveryMs) && compactEveryMs > 24 * 86_400_000)
        ) {
          return usageError(
            command,
            `--compact-every: expected a duration from 1s to 24d like 30s, 10m, 2h or 7d (or never), got "${every}"`,
          );
        }
      }
      const { stackCommand } = await import('./commands/services.ts');
      return stackCommand({ compactEveryMs });
    }
    default:
      return usageError(command, 'unknown command');
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`stevedore: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
