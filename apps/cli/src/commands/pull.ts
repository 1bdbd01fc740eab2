/**
 * `stevedore pull REF [--platform P] [--wait] [--json]`: queue a pull; with --wait follow it to the
 * end, one line per layer as it changes state (bars on a terminal come with the operating issue),
 * and exit non-zero with the reason when it fails.
 */
import { producerConnection, PullSubmitter, type PullStatus } from '@stevedore/pipeline';

/** How often --wait reads the pull's status: a person's refresh rate, not a worker's poll. */
const STATUS_INTERVAL_MS = 300;

export interface PullArgs {
  readonly ref: string;
  readonly platform: string | undefined;
  readonly wait: boolean;
  readonly json: boolean;
  readonly redisUrl: string;
}

export async function pullCommand(
  args: PullArgs,
  out: NodeJS.WritableStream = process.stdout,
): Promise<number> {
  const redis = producerConnection(args.redisUrl);
  const submitter = new PullSubmitter(redis);
  try {
    const id = await submitter.submit(args.ref, args.platform);
    if (!args.wait) {
      out.write(args.json ? `${JSON.stringify({ id })}\n` : `${id}\n`);
      return 0;
    }
    if (!args.json) out.write(`pull ${id} queued for ${args.ref}\n`);
    const seen = new Map<string, string>();
    for (;;) {
      const status = await submitter.status(id);
      if (status === undefined) throw new Error(`pull ${id} disappeared from the queue`);
      if (!args.json) reportLayers(status, seen, out);
      if (status.state === 'completed') {
        out.write(args.json ? `${JSON.stringify(status)}\n` : summary(status));
        return 0;
      }
      if (status.state === 'failed') {
        if (args.json) out.write(`${JSON.stringify(status)}\n`);
        process.stderr.write(
          `stevedore: pull ${args.ref} failed: ${status.failedReason ?? 'unknown reason'}\n`,
        );
        return 1;
      }
      await new Promise((resolve) => setTimeout(resolve, STATUS_INTERVAL_MS));
    }
  } finally {
    await submitter.close();
    redis.disconnect();
  }
}

function reportLayers(status: PullStatus, seen: Map<string, string>, out: NodeJS.WritableStream): void {
  for (const layer of status.layers) {
    const line =
      `${layer.digest.slice(0, 19)} ${layer.outcome} ${layer.commitState === 'completed' ? 'committed' : ''}`.trim();
    if (seen.get(layer.digest) === line) continue;
    seen.set(layer.digest, line);
    out.write(`  ${line} (${layer.size} bytes)\n`);
  }
}

function summary(status: PullStatus): string {
  const digest = status.result?.resolvedDigest ?? '';
  return `pulled ${status.ref}: ${status.layersDone}/${status.layersTotal} layers, digest ${digest}\n`;
}
