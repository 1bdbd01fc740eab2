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
 * These flags are read by V8 whenever it computes a limit, so setting them after start works; they
 * apply to the whole process, worker threads included. Called by openStore; idempotent.
 */
import { setFlagsFromString } from 'node:v8';

export const STREAMING_V8_FLAGS = ['--heap-growing-percent=300', '--no-memory-reducer'] as const;

let tuned = false;

export function tuneHeapForStreaming(): void {
  if (tuned) return;
  tuned = true;
  for (const flag of STREAMING_V8_FLAGS) setFlagsFromString(flag);
}
