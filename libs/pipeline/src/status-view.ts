/**
 * Showing a pull's progress: on a terminal, one bar per layer redrawn in place (bytes, and whether
 * the layer was fetched, reused or waited for); otherwise plain lines, one per change of state.
 */
import type { LayerStatus, PullStatus } from './submit.ts';

const BAR_WIDTH = 24;
const MiB = 1024 * 1024;

function short(digest: string): string {
  return digest.slice(digest.indexOf(':') + 1, digest.indexOf(':') + 13);
}

function mib(bytes: number): string {
  return (bytes / MiB).toFixed(1);
}

/** What the layer is doing, in the words a user of docker pull expects. */
export function layerState(layer: LayerStatus): string {
  if (layer.commitState === 'completed') {
    return layer.outcome === 'fetched'
      ? 'Pull complete'
      : layer.outcome === 'waited'
        ? 'Waited, complete'
        : 'Already exists';
  }
  if (layer.fetchState === 'failed' || layer.splitState === 'failed' || layer.commitState === 'failed')
    return 'Failed';
  if (layer.fetchState === 'completed') return layer.splitState === 'completed' ? 'Committing' : 'Splitting';
  switch (layer.outcome) {
    case 'waiting':
      return 'Waiting (another worker)';
    case 'fetching':
      return 'Downloading';
    case 'queued':
      return 'Queued';
    case 'fetched':
    case 'reused':
    case 'waited':
      return 'Splitting';
  }
}

export function barLine(layer: LayerStatus): string {
  const fraction = layer.size === 0 ? 1 : Math.min(1, layer.bytes / layer.size);
  const filled = Math.round(fraction * BAR_WIDTH);
  const bar = `${'='.repeat(Math.max(0, filled - 1))}${filled > 0 ? '>' : ''}${' '.repeat(BAR_WIDTH - filled)}`;
  return `${short(layer.digest)}: ${layerState(layer).padEnd(24)} [${bar}] ${mib(layer.bytes).padStart(7)}/${mib(layer.size)} MiB`;
}

export interface ProgressView {
  /** Shows one pull, or several side by side (the demo's concurrent pulls). */
  update(status: PullStatus | readonly PullStatus[]): void;
  done(): void;
}

function many(status: PullStatus | readonly PullStatus[]): readonly PullStatus[] {
  return 'layers' in status ? [status] : status;
}

export function terminalView(out: NodeJS.WriteStream): ProgressView {
  let drawn = 0;
  return {
    update(statuses) {
      const lines: string[] = [];
      for (const status of many(statuses)) {
        lines.push(
          `${status.ref}: ${status.state}, ${status.layersDone}/${status.layersTotal} layers, ${mib(status.bytesDone)}/${mib(status.bytesTotal)} MiB`,
        );
        lines.push(...status.layers.map((layer) => `  ${barLine(layer)}`));
      }
      // Move up over what we drew last time and redraw every line.
      if (drawn > 0) out.write(`\x1b[${drawn}A`);
      for (const text of lines) out.write(`\x1b[2K${text}\n`);
      drawn = lines.length;
    },
    done() {
      drawn = 0;
    },
  };
}

export function plainView(out: NodeJS.WritableStream): ProgressView {
  const shown = new Map<string, string>();
  return {
    update(statuses) {
      const several = many(statuses).length > 1;
      for (const status of many(statuses)) {
        for (const layer of status.layers) {
          const state = layerState(layer);
          const key = `${status.id}/${layer.digest}`;
          if (shown.get(key) === state) continue;
          shown.set(key, state);
          out.write(
            `${several ? `${status.ref} ` : ''}${short(layer.digest)}: ${state} (${layer.size} bytes)\n`,
          );
        }
      }
    },
    done() {},
  };
}
