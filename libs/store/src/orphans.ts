/**
 * Crash leftovers: an import killed mid-way (kill -9, an OOM kill, a lost node) has written packs
 * that no index file lists and maybe a splitstream that no layer record names; nothing will ever
 * refer to them, and a failed import that lived removes its own. A put killed mid-way leaves a
 * temporary file on a directory store. {@link removeOrphans} deletes them once they are older than
 * a minimum age, which must exceed the longest import: an import in progress has packs no index
 * file lists yet. A corrupt index file stops it before anything is deleted. docs/store-format.md
 * ("Crash leftovers").
 *
 * Every pack a finished import published stays listed by an index file: compaction keeps every
 * entry (compaction.ts). So "no index file lists it" means "never published".
 */
import { listAll, type Backend, type ObjectInfo } from './backend/backend.ts';
import { PREFIX } from './layout.ts';
import type { Limiter } from './limiter.ts';
import { mapLimited } from './map-limited.ts';
import { loadIndexFiles, verifyIndexFile } from './objects.ts';
import { indexPacks } from './pack-index.ts';
import type { LayerRecord } from './records.ts';

/** Leftovers younger than this stay (an import that takes longer would lose its packs). */
export const DEFAULT_ORPHAN_MIN_AGE_MS = 24 * 60 * 60 * 1000;
const CONCURRENCY = 8;

export interface RemoveOrphansOptions {
  /** Leftovers written at least this long ago are deleted (default {@link DEFAULT_ORPHAN_MIN_AGE_MS}). */
  readonly minAgeMs?: number;
  readonly signal?: AbortSignal;
}

export interface Removed {
  readonly count: number;
  readonly bytes: number;
}

export interface RemoveOrphansResult {
  /** Packs no index file lists. */
  readonly packs: Removed;
  /** Splitstreams no layer record names. */
  readonly splitstreams: Removed;
  /** The backend's temporary files of interrupted puts. */
  readonly temporaries: Removed;
}

interface Deps {
  readonly backend: Backend;
  readonly limiter: Limiter;
  listLayers(signal?: AbortSignal): Promise<LayerRecord[]>;
}

export async function removeOrphans(
  deps: Deps,
  options: RemoveOrphansOptions = {},
): Promise<RemoveOrphansResult> {
  const { backend, limiter } = deps;
  const { signal } = options;
  const minAgeMs = options.minAgeMs ?? DEFAULT_ORPHAN_MIN_AGE_MS;
  const cutoff = Date.now() - minAgeMs;
  const old = async (prefix: string): Promise<ObjectInfo[]> => {
    const out: ObjectInfo[] = [];
    for await (const o of listAll(backend, prefix, { signal })) {
      if (o.modified !== undefined && o.modified < cutoff) out.push(o);
    }
    return out;
  };

  // Candidates first, references second: whatever is published after the candidates were listed
  // refers only to younger packs and splitstreams (imports finish within the minimum age).
  const oldPacks = await old(PREFIX.packs);
  const listedPacks = oldPacks.length === 0 ? new Set<string>() : await packsListed(backend, limiter, signal);
  const packs = oldPacks.filter((o) => {
    const id = packIdOf(o.key);
    return id !== undefined && !listedPacks.has(id);
  });

  const oldSplitstreams = await old(PREFIX.splitstreams);
  const named =
    oldSplitstreams.length === 0
      ? new Set<string>()
      : new Set((await deps.listLayers(signal)).map((layer) => layer.splitstream.key));
  const splitstreams = oldSplitstreams.filter((o) => !named.has(o.key));

  const remove = async (objects: readonly ObjectInfo[]): Promise<Removed> => {
    await mapLimited(objects, CONCURRENCY, ({ key }) =>
      limiter.io.run(() => backend.delete(key, { signal }), signal),
    );
    return { count: objects.length, bytes: objects.reduce((n, o) => n + o.size, 0) };
  };
  const result = {
    packs: await remove(packs),
    splitstreams: await remove(splitstreams),
    temporaries: (await backend.removeStaleTemporaries?.(minAgeMs)) ?? { count: 0, bytes: 0 },
  };
  await backend.sync();
  return result;
}

/** `packs/<id>.pack` → `<id>`; undefined for any other key (not the store's: left alone). */
function packIdOf(key: string): string | undefined {
  return /^packs\/([0-9a-f]{32})\.pack$/.exec(key)?.[1];
}

/** Every pack id any index file lists (verified against their names). */
async function packsListed(backend: Backend, limiter: Limiter, signal?: AbortSignal): Promise<Set<string>> {
  const packs = new Set<string>();
  const loaded = new Set<string>();
  await loadIndexFiles(
    backend,
    limiter,
    { after: () => undefined, loaded: (key) => loaded.has(key), signal },
    (key, bytes) => {
      verifyIndexFile(key, bytes);
      for (const id of indexPacks(bytes, key)) packs.add(id);
      loaded.add(key);
    },
  );
  return packs;
}
