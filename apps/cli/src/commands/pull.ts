/**
 * `stevedore pull REF [--platform P] [--wait] [--json]`: queue a pull; with --wait follow it to the
 * end (bars on a terminal, plain lines otherwise, one JSON document with --json), and exit 1 with
 * the reason when it fails.
 */

import {
  plainView,
  commandConnection,
  connectionLoss,
  PullSubmitter,
  terminalView,
  type ProgressView,
} from '@stevedore/pipeline';

/** How often --wait reads the pull's status: a person's refresh rate, not a worker's poll. */
const STATUS_INTERVAL_MS = 250;

export interface PullArgs {
  readonly ref: string;
  readonly platform: string | undefined;
  readonly wait: boolean;
  readonly json: boolean;
  readonly redisUrl: string;
}

export async function pullCommand(args: PullArgs, out: NodeJS.WriteStream = process.stdout): Promise<number> {
  // Connected first: with Redis unreachable, BullMQ would wait for it without end.
  const redis = await commandConnection(args.redisUrl);
  const submitter = new PullSubmitter(redis);
  try {
    const id = await submitter.submit(args.ref, args.platform);
    if (!args.wait) {
      out.write(args.json ? `${JSON.stringify({ id })}\n` : `${id}\n`);
      return 0;
    }
    const view: ProgressView | undefined = args.json
      ? undefined
      : out.isTTY
        ? terminalView(out)
        : plainView(out);
    if (view !== undefined && !out.isTTY) out.write(`pull ${id}: ${args.ref}\n`);
    for (;;) {
      const status = await submitter.status(id).catch((err: unknown) => {
        // Redis gone for longer than the connection retries: say so, and that the pull goes on.
        const loss = connectionLoss(redis);
        if (loss === undefined) throw err;
        throw new Error(
          `stopped following pull ${id}: ${loss.message}; the pull itself goes on in the workers ` +
            `(its state: GET /v1/pulls/${id} on the API, or Bull Board)`,
          { cause: err },
        );
      });
      if (status === undefined) throw new Error(`pull ${id} disappeared from the queue`);
      view?.update(status);
      if (status.state === 'completed' || status.state === 'failed') {
        view?.done();
        if (args.json) out.write(`${JSON.stringify(status)}\n`);
        if (status.state === 'failed') {
          process.stderr.write(
            `stevedore: pull ${args.ref} failed: ${status.failedReason ?? 'unknown reason'}\n`,
          );
          return 1;
        }
        if (!args.json)
          out.write(`Digest: ${status.result?.resolvedDigest ?? ''}\nStatus: downloaded ${status.ref}\n`);
        return 0;
      }
      await new Promise((resolve) => setTimeout(resolve, STATUS_INTERVAL_MS));
    }
  } finally {
    await submitter.close();
    redis.disconnect();
  }
}
