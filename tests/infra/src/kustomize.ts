/**
 * Renders a kustomization with `kubectl kustomize` (kustomize v5, built into kubectl) and parses
 * the multi-document YAML it prints.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';

const run = promisify(execFile);

/** Rendered overlays are a few hundred kilobytes; this bounds a runaway render. */
const MAX_OUTPUT_BYTES = 16 * 1024 * 1024;

export interface K8sObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: {
    readonly name: string;
    readonly namespace?: string;
    readonly labels?: Readonly<Record<string, string>>;
    readonly annotations?: Readonly<Record<string, string>>;
  };
  readonly [field: string]: unknown;
}

export async function kustomize(dir: string): Promise<K8sObject[]> {
  let stdout: string;
  try {
    ({ stdout } = await run('kubectl', ['kustomize', dir], { maxBuffer: MAX_OUTPUT_BYTES }));
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') {
      throw new Error(
        'kubectl is not on PATH: the infra tests render the overlays with `kubectl kustomize`',
        {
          cause: err,
        },
      );
    }
    throw new Error(`kubectl kustomize ${dir} failed: ${e.stderr?.trim() ?? e.message}`, { cause: err });
  }
  return parseManifests(stdout, dir);
}

/** The objects of a multi-document YAML stream; every document must be a Kubernetes object. */
export function parseManifests(text: string, source: string): K8sObject[] {
  return parseAllDocuments(text).flatMap((doc, i) => {
    if (doc.errors.length > 0) {
      throw new Error(
        `${source}: document ${i + 1} is not valid YAML: ${doc.errors.map((e) => e.message).join('; ')}`,
      );
    }
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) return [];
    if (!isObject(value)) throw new Error(`${source}: document ${i + 1} is not a Kubernetes object`);
    return [value];
  });
}

function isObject(value: unknown): value is K8sObject {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  const metadata = v['metadata'] as Record<string, unknown> | undefined;
  return (
    typeof v['apiVersion'] === 'string' &&
    typeof v['kind'] === 'string' &&
    typeof metadata?.['name'] === 'string'
  );
}
