import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { kustomize, type K8sObject } from './kustomize.ts';
import { listOverlays, OVERLAYS_DIR } from './repo.ts';
import { validateObject } from './validate.ts';

const deployment = (spec: Record<string, unknown>): K8sObject => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'x' },
  spec: {
    selector: { matchLabels: { a: 'b' } },
    template: { spec: { containers: [{ name: 'c', image: 'i' }], ...spec } },
  },
});

describe('validateObject', () => {
  it('accepts a valid object', () => {
    expect(() => validateObject(deployment({ terminationGracePeriodSeconds: 600 }))).not.toThrow();
  });

  it.each([
    [
      deployment({ terminationGracePeriodSeconds: '600' }),
      'Deployment/x does not match the apps/v1/Deployment schema: data/spec/template/spec/terminationGracePeriodSeconds must be integer',
    ],
    [
      {
        apiVersion: 'keda.sh/v1alpha1',
        kind: 'ScaledObject',
        metadata: { name: 's' },
        spec: { triggers: [] },
      },
      'ScaledObject/s does not match the keda.sh/v1alpha1/ScaledObject schema: data/spec must have required property scaleTargetRef',
    ],
    [{ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' } }, 'Pod/p: no schema for v1/Pod'],
  ] satisfies [K8sObject, string][])('refuses %j', (object, message) => {
    expect(() => validateObject(object)).toThrow(message);
  });
});

describe.each(listOverlays())('overlay %s', (overlay) => {
  it('matches the Kubernetes and KEDA schemas', async () => {
    const objects = await kustomize(join(OVERLAYS_DIR, overlay));
    expect(objects.length).toBeGreaterThan(0);
    for (const object of objects) validateObject(object);
  });
});
