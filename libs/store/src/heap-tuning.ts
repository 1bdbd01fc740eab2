/**
 * V8's heap sizing for a process that streams layers (see docs/store-format.md, "Memory").
 *
 * Such a process moves gigabytes through Buffers (decoded tar, blob chunks, pack and archive
 * blocks: memory outside V8's heap) while its JavaScript heap holds about 20 MB of live objects.
 * V8 sizes the next full GC's limit from that small live heap with a growing factor near 1.4, and
 * its memory reducer reads the low JavaScript allocation rate as an idle process: measured with
 * `--trace-gc-nvp` on a pull of 1.2 GB of tar, the worker ran a full mark-compact every 60-100 ms
 * (75-119 of them), each after under 2 MB of allocation, and V8's helper threads spent about
 * 3-4 CPU-s marking the same 20 MB over and over (a fifth of the process's CPU).
 *
 * Letting the heap grow by 4x its live size before the next full GC (heap-growing-percent=300)
 * and turning the memory reducer off brings that to about 32 full GCs, most of them now the ones
 * V8 runs for every 64 MB of new Buffer memory, which keeps the garbage Buffers bounded: RSS did not
 * grow (329-332 MiB against 335-352) and the pull used 12.8-13.3 CPU-s against 15.1-16.7.
 * `--external-memory-accounted-in-global-limit` (Buffers counted in that limit instead) removed
 * nearly every full GC but let RSS reach 411-438 MiB and saved less time: not set.
 *
 * The young generation stays at its initial size (semi-space-growth-factor=1). V8 doubles it up to
 * 64 MiB per semi-space when much survives a scavenge; the AWS SDK's per-request objects did that
 * during a rebuild from S3 (measured with v8.getHeapSpaceStatistics: new space 128 MiB committed,
 * 3 MiB used), and peak RSS followed: 392-424 MiB for the split and rebuild of /usr/share on S3,
 * 291-305 with the flag; a pull worker's 351 MiB became 329, at the same CPU (10.85 against 10.88 s).
 *
 * These flags are read by V8 whenever it computes a limit, so setting them after start works; they
 * apply to the whole process, worker threads included. Called by openStore; idempotent.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export const STREAMING_V8_FLAGS = [
  '--heap-growing-percent=300',
  '--no-memory-reducer',
  '--semi-space-growth-factor=1',
] as const;

let tuned = false;

export function tuneHeapForStreaming(): void {
  if (tuned) return;
  tuned = true;
  for (const flag of STREAMING_V8_FLAGS) setFlagsFromString(flag);
}

const MiB = 1024 * 1024;

/*
 * Pacing V8's garbage collection to the store's Buffer churn, while the process is large.
 *
 * A rebuild hands out a new Buffer per block of the tar (1 byte per byte rebuilt) and reads its
 * objects into a new Buffer per group (S3 adds the socket's chunks): garbage outside V8's heap. V8
 * looks at that memory only when 64 MB of it has been allocated since its last full GC, and the
 * freed buffers leave the C heap fragmented. Measured on the rebuild of /usr/share (645 MB, split
 * bench), after the split: RSS went from 190 to 270-287 MiB on S3 and to 243-276 on a directory,
 * with the main thread's C heap ([heap] in smaps) at 93 MiB for about 50 MiB of live ArrayBuffers.
 *
 * So every GC_PACE_BYTES of buffers handed out (the rebuild notes its output and group reads, the
 * S3 backend the response chunks of a ranged read), a rebuild looks at the RSS and, above
 * `aboveBytes` (default: the store's 256 MiB target less 64 MiB of room for the garbage of a few
 * paces and its fragmentation; 48 MiB of room measured up to 258), asks V8 for a GC: a scavenge, and every MAJOR_GC_EVERY-th time a
 * full GC. A scavenge is cheap and frees the buffers that died young (the output of a fast
 * rebuild); a full GC marks the whole heap (about 10 ms) and frees the ones that were promoted
 * meanwhile (a group read that outlived a few scavenges). Measured (split bench, alternating
 * settings; libs/store/README.md): full GCs every 16 MiB kept every rebuild under 240 MiB but made
 * the 2 GB synthetic rebuild from S3 30% slower (338-344 against 492 MB/s); this mix kept the
 * rebuilds at 211-245 MiB, about a tenth slower than without pacing. The services set 448 MiB
 * (STEVEDORE_GC_PACE_ABOVE_MIB; their target is 512, and an export need not pay for a lower one).
 * 0 turns it off. The GC
 * function comes from a new context after `--expose-gc` is set (the main context gets no global
 * `gc`).
 */

/** Buffer bytes handed out between two looks at the RSS. */
export const GC_PACE_BYTES = 8 * MiB;
/** Every this many paced GCs, a full GC instead of a scavenge. */
export const MAJOR_GC_EVERY = 4;
/** Default RSS above which rebuilds pace GCs: the store's 256 MiB target less 64 MiB. */
export const DEFAULT_GC_PACE_ABOVE_BYTES = 192 * MiB;
/** The same room under a 512 MiB target: the services' default (STEVEDORE_GC_PACE_ABOVE_MIB). */
export const SERVICE_GC_PACE_ABOVE_BYTES = 448 * MiB;

let paceAbove = DEFAULT_GC_PACE_ABOVE_BYTES;
let churned = 0;
let paced = 0;
type Collect = (options: { type: 'major' | 'minor' }) => void;
let collect: Collect | undefined;

/** Sets the RSS above which rebuilds pace GCs (process-wide; 0: never). */
export function setGcPaceAbove(bytes: number): void {
  if (!Number.isFinite(bytes) || bytes < 0) throw new RangeError(`GC pace threshold ${bytes}: not a size`);
  paceAbove = bytes;
}

/** Counts `bytes` of Buffers handed out; asks for a GC every pace while the RSS is too high. */
export function noteBufferChurn(bytes: number): void {
  if (paceAbove === 0) return;
  churned += bytes;
  if (churned < GC_PACE_BYTES) return;
  churned = 0;
  if (process.memoryUsage.rss() <= paceAbove) return;
  collect ??= exposeGc();
  paced++;
  collect({ type: paced % MAJOR_GC_EVERY === 0 ? 'major' : 'minor' });
}

function exposeGc(): Collect {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as Collect;
}
