/**
 * `stevedore verify [REF...] [--json]`: reads back what the store holds and checks it end to end
 * (libs/store verify.ts): references, image records, blobs hashed, every layer rebuilt and checked
 * against its diffID. Changes nothing; safe while workers pull. Exit 0 when nothing is wrong, 1
 * with each problem on stdout otherwise.
 */
import { parseReference, type Reference } from '@stevedore/oci/spec';
import { verifyStore, type VerifyProblem, type VerifyResult } from '@stevedore/store';
import { withStore } from './images.ts';
import { cliReadLease } from './read-lease.ts';

const MB = 1000 * 1000;
const mb = (bytes: number): string => `${(bytes / MB).toFixed(1)} MB`;

export function describeVerification(r: VerifyResult): string {
  const read =
    `${r.references} reference(s), ${r.images} image(s), ${r.blobs.count} blob(s) (${mb(r.blobs.bytes)}), ` +
    `${r.layers.count} layer(s) rebuilt (${mb(r.layers.bytes)} of tar)`;
  return r.problems.length === 0
    ? `Verified ${read}: no problems.\n`
    : `Verified ${read}: ${r.problems.length} problem(s).\n`;
}

const problemLine = (p: VerifyProblem): string => `problem: ${p.subject}: ${p.message}\n`;

/** A malformed reference on the command line (bad usage: exit code 2). */
export class VerifyUsageError extends Error {
  override readonly name = 'VerifyUsageError';
}

export async function verifyCommand(
  options: { refs: readonly string[]; json: boolean; redisUrl: string },
  out: NodeJS.WritableStream = process.stdout,
  err: NodeJS.WritableStream = process.stderr,
): Promise<number> {
  const references: Reference[] = [];
  for (const text of options.refs) {
    try {
      references.push(parseReference(text));
    } catch (err) {
      throw new VerifyUsageError(err instanceof Error ? err.message : String(err));
    }
  }
  // A garbage collection deletes what verify reads (verify would report it missing): a collection
  // waits for verify, and verify waits while one runs.
  const lease = await cliReadLease('verify', 'stevedore verify', options.redisUrl, err);
  try {
    return await verifyWithin(references, options.json, lease.signal, out);
  } finally {
    await lease.end();
  }
}

async function verifyWithin(
  references: readonly Reference[],
  json: boolean,
  signal: AbortSignal | undefined,
  out: NodeJS.WritableStream,
): Promise<number> {
  return withStore(async (store) => {
    const result = await verifyStore(store, {
      ...(references.length === 0 ? {} : { references }),
      ...(signal === undefined ? {} : { signal }),
      // Problems as they are found: a long verification shows them before it ends.
      ...(json ? {} : { onProblem: (p: VerifyProblem) => out.write(problemLine(p)) }),
    });
    out.write(json ? `${JSON.stringify(result)}\n` : describeVerification(result));
    return result.problems.length === 0 ? 0 : 1;
  });
}
