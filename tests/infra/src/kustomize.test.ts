import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kustomize, parseManifests } from './kustomize.ts';

describe('parseManifests', () => {
  it('reads every document, skipping empty ones', () => {
    const text =
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: b}\n';
    expect(parseManifests(text, 'x').map((o) => `${o.kind}/${o.metadata.name}`)).toEqual([
      'ConfigMap/a',
      'Secret/b',
    ]);
  });

  it.each([
    ['a: [1\n', 'x: document 1 is not valid YAML'],
    ['apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n', 'x: document 1 is not a Kubernetes object'],
    ['- 1\n', 'x: document 1 is not a Kubernetes object'],
  ])('refuses %j', (text, message) => {
    expect(() => parseManifests(text, 'x')).toThrow(message);
  });
});

describe('kustomize', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stevedore-infra-'));
    await writeFile(
      join(dir, 'kustomization.yaml'),
      'namespace: ns\nconfigMapGenerator:\n  - name: c\n    literals: [A=1]\n    options: {disableNameSuffixHash: true}\n',
    );
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('renders a kustomization', async () => {
    expect(await kustomize(dir)).toEqual([
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c', namespace: 'ns' }, data: { A: '1' } },
    ]);
  });

  it('names the directory and says why when kustomize fails', async () => {
    const missing = join(dir, 'missing');
    const error = await kustomize(missing).then(
      () => undefined,
      (err: unknown) => err as Error,
    );
    expect(error?.message).toMatch(/^kubectl kustomize \S+\/missing failed: .*no such file or directory/);
    expect(error?.message.startsWith(`kubectl kustomize ${missing} failed: `)).toBe(true);
  });
});
