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
