/** The explicit dependencies every processor receives (no DI container: a plain object). */
import type { FlowProducer, Queue } from 'bullmq';
import type { LockManager } from '@stevedore/lock';
import type { Logger } from './logger.ts';
import type { SplitSlots } from './processors/split-while-fetching.ts';
import type { PipelineExporter, PipelineRegistry, PipelineStore } from './ports.ts';

/** Counters and timings the processors report; the API exposes them as Prometheus metrics. */
export interface PipelineMetrics {
  count(name: MetricName, value?: number, labels?: Readonly<Record<string, string>>): void;
  observe(name: TimingName, seconds: number, labels?: Readonly<Record<string, string>>): void;
}
export type MetricName =
  | 'bytes_fetched'
  | 'bytes_skipped'
  | 'blobs_committed'
  | 'layers_committed'
  | 'objects_written'
  | 'objects_reused'
  | 'lock_waits';
export type TimingName = 'stage_seconds' | 'lock_wait_seconds';

export const NO_METRICS: PipelineMetrics = { count() {}, observe() {} };

export interface ProcessorDeps {
  readonly store: PipelineStore;
  readonly registry: PipelineRegistry;
  /** Export jobs (hasher role); absent where no store to export from is configured. */
  readonly exporter?: PipelineExporter;
  readonly locks: LockManager;
  /** Every stevedore queue by name (for waking parked jobs). */
  readonly queues: ReadonlyMap<string, Queue>;
  readonly flows: FlowProducer;
  readonly logger: Logger;
  readonly metrics: PipelineMetrics;
  /**
   * Present in a process that serves both the fetcher and the hasher role: fetch jobs split the
   * layer from the bytes they fetch, up to this many at once (processors/split-while-fetching.ts).
   */
  readonly splitWhileFetching?: SplitSlots;
}
