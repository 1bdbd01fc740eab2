/**
 * Every overlay in infra/overlays, rendered with kustomize and checked: the services run the apps
 * that exist with the configuration their schemas know, probes on the health endpoints, resources
 * from the benchmarks, a locked-down security context, a shutdown grace period that covers a large
 * layer, disruption budgets, and autoscalers driven by queues that exist.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { IDeployment } from 'kubernetes-models/apps/v1';
import type { IHorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import type { ICronJob } from 'kubernetes-models/batch/v1';
import type { IPodDisruptionBudget } from 'kubernetes-models/policy/v1';
import type { IContainer, IProbe, IService } from 'kubernetes-models/v1';
import type { IScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1';
import { parse as parseYaml } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseEnv } from '@stevedore/config';
import { QUEUE_JOBS_METRIC, QUEUE_STATES } from '@stevedore/metrics';
import { ALL_QUEUES } from '@stevedore/queue';
import {
  containerEnv,
  dataOf,
  envValue,
  findObject,
  generatorName,
  objectsOfKind,
  podReferences,
  variableReferences,
  workloads,
  type Workload,
} from './k8s.ts';
import { kustomize, type K8sObject } from './kustomize.ts';
import { labelValues } from './promql.ts';
import { MiB, parseQuantity } from './quantity.ts';
import { INFRA_DIR, listOverlays, OVERLAYS_DIR, REPO_ROOT } from './repo.ts';
import { appOfCommand, SCHEDULED, SDK_ENV, SERVICES, type ServiceSpec } from './services.ts';
import type { Schema } from '@stevedore/config';

/** What each overlay must contain. A new overlay fails the first test until it is added here. */
const OVERLAYS: Readonly<
  Record<
    string,
    { autoscaler: 'none' | 'keda' | 'hpa'; minWorkerReplicas: number; externalSecrets: readonly string[] }
  >
> = {
  dev: { autoscaler: 'none', minWorkerReplicas: 1, externalSecrets: [] },
  prod: {
    autoscaler: 'keda',
    minWorkerReplicas: 2,
    externalSecrets: ['stevedore-registry-auth', 'stevedore-secrets'],
  },
  'prod-hpa': {
    autoscaler: 'hpa',
    minWorkerReplicas: 2,
    externalSecrets: ['stevedore-registry-auth', 'stevedore-secrets'],
  },
};

/** Benchmarks: peak RSS target of one worker process, and the cores it uses at most. */
const PEAK_RSS_BYTES = 512 * MiB;
const BENCHMARK_CORES = 2;
/**
 * A worker that receives SIGTERM in the middle of a large layer finishes it (BullMQ
 * worker.close()): a 10 GiB layer at 100 MB/s takes ~108 s, plus time to close connections.
 */
const LARGE_LAYER_BYTES = 10 * 1024 * MiB;
const LAYER_THROUGHPUT_BYTES_PER_S = 100e6;
const SHUTDOWN_MARGIN_S = 30;
const MIN_WORKER_GRACE_S = Math.ceil(LARGE_LAYER_BYTES / LAYER_THROUGHPUT_BYTES_PER_S) + SHUTDOWN_MARGIN_S;
/** Scale-down must not react to a momentary dip in the queue (KEDA's and the HPA's default is 300 s). */
const MIN_SCALE_DOWN_WINDOW_S = 300;
/** The states the queue gauges must count: jobs waiting for a worker and jobs a worker holds. */
const LOAD_STATES = ['active', 'waiting'];

/**
 * Every api replica exports the same fleet-wide queue counts, so a query must take one of them
 * (`max by (queue, state)`) before adding queues and states up: a plain sum counts each job once
 * per replica.
 */
function expectOneReplicaCounted(query: string): void {
  const by = new RegExp(`max by \\(([^)]*)\\) \\((?:<<\\.Series>>|${QUEUE_JOBS_METRIC})\\{`).exec(query);
  expect(by, `${query}: max by (...) over ${QUEUE_JOBS_METRIC}`).not.toBeNull();
  const labels = (by?.[1] ?? '').split(',').map((l) => l.trim());
  expect(labels, query).toEqual(expect.arrayContaining(['queue', 'state']));
}

it('counts load in states the queue gauges export', () => {
  for (const state of LOAD_STATES) expect(QUEUE_STATES).toContain(state);
});

interface AppContainer {
  readonly app: string;
  readonly service: ServiceSpec;
  readonly container: IContainer;
  readonly workload: Workload;
}

function appContainers(objects: readonly K8sObject[]): AppContainer[] {
  return workloads(objects).flatMap((workload) =>
    workload.podSpec.containers.flatMap((container) => {
      const app = appOfCommand(container.command);
      const service = app === undefined ? undefined : SERVICES[app];
      if (app === undefined || app === 'cli') return []; // cli: scheduled commands (scheduledContainers)
      if (service === undefined)
        throw new Error(`container ${container.name} runs apps/${app}, which no test knows`);
      return [{ app, service, container, workload }];
    }),
  );
}

interface ScheduledContainer {
  /** The CLI command it runs (`compact`). */
  readonly command: string;
  readonly schema: Schema;
  readonly container: IContainer;
  readonly workload: Workload;
}

/** Containers that run a command of the CLI (`node apps/cli/src/main.ts COMMAND`). */
function scheduledContainers(objects: readonly K8sObject[]): ScheduledContainer[] {
  return workloads(objects).flatMap((workload) =>
    workload.podSpec.containers.flatMap((container) => {
      if (appOfCommand(container.command) !== 'cli') return [];
      const command = container.args?.[0] ?? '';
      const spec = SCHEDULED[command];
      if (spec === undefined)
        throw new Error(`container ${container.name} runs the CLI's "${command}", which no test knows`);
      return [{ command, schema: spec.schema, container, workload }];
    }),
  );
}

function allContainers(workload: Workload): IContainer[] {
  return [...(workload.podSpec.initContainers ?? []), ...workload.podSpec.containers];
}

function label(workload: Workload, container?: IContainer): string {
  const w = `${workload.object.kind}/${workload.object.metadata.name}`;
  return container === undefined ? w : `${w} container ${container.name}`;
}

/** The configured value of a variable: set in the manifests, else the schema's default. */
function configured(entry: AppContainer, name: string, objects: readonly K8sObject[]): string | undefined {
  const set = containerEnv(entry.container, objects).find((e) => e.name === name);
  if (set !== undefined) return envValue(set, objects);
  // Defaults are strings, numbers, booleans or lists (env.list): as they would be written.
  const fallback = entry.service.schema[name]?.fallback?.() as
    string | number | boolean | readonly string[] | undefined;
  if (fallback === undefined) return undefined;
  return Array.isArray(fallback) ? fallback.join(',') : String(fallback);
}

/** A default that only works on a developer's machine: the loopback address or a relative path. */
function isLocalDefault(value: unknown): boolean {
  return typeof value === 'string' && (/127\.0\.0\.1|localhost|\[::1\]/.test(value) || value.startsWith('.'));
}

function probePort(probe: IProbe | undefined, container: IContainer): number | undefined {
  const port = probe?.httpGet?.port;
  if (typeof port === 'number') return port;
  return container.ports?.find((p) => p.name === port)?.containerPort;
}

const rendered = new Map<string, K8sObject[]>();
beforeAll(async () => {
  await Promise.all(
    listOverlays().map(async (name) => {
      rendered.set(name, await kustomize(join(OVERLAYS_DIR, name)));
    }),
  );
});

function objectsOf(overlay: string): K8sObject[] {
  const objects = rendered.get(overlay);
  if (objects === undefined) throw new Error(`overlay ${overlay} was not rendered`);
  return objects;
}

it('checks every overlay in infra/overlays', () => {
  expect(listOverlays()).toEqual(Object.keys(OVERLAYS).sort());
});

describe.each(Object.keys(OVERLAYS))('overlay %s', (overlay) => {
  const expected = OVERLAYS[overlay] ?? { autoscaler: 'none', minWorkerReplicas: 1, externalSecrets: [] };

  it('deploys every service once, as an app that exists, from one pinned image', () => {
    const objects = objectsOf(overlay);
    const apps = appContainers(objects);
    expect(apps.map((a) => a.app).sort()).toEqual(Object.keys(SERVICES).sort());
    for (const { app, container, workload } of apps) {
      expect(workload.object.kind, label(workload, container)).toBe('Deployment');
      expect(existsSync(join(REPO_ROOT, 'apps', app, 'src', 'main.ts')), `apps/${app}/src/main.ts`).toBe(
        true,
      );
    }
    const images = new Set(apps.map((a) => a.container.image));
    expect(images.size).toBe(1);
    const [image = ''] = images;
    expect(image).toMatch(/^[\w.\-/:]+(:[\w.-]+|@sha256:[0-9a-f]{64})$/);
    expect(image.endsWith(':latest')).toBe(false);
    // Whatever else runs the stevedore image must be one of the services.
    for (const workload of workloads(objects)) {
      for (const container of allContainers(workload)) {
        if (container.image !== image) continue;
        const app = appOfCommand(container.command);
        expect(app, label(workload, container)).toBeDefined();
        if (app === 'cli')
          expect(SCHEDULED[container.args?.[0] ?? ''], label(workload, container)).toBeDefined();
      }
    }
  });

  it('probes every long-running container; the services on their health endpoints and port', () => {
    const objects = objectsOf(overlay);
    for (const workload of workloads(objects)) {
      if (workload.object.kind === 'Job' || workload.object.kind === 'CronJob') continue;
      for (const container of workload.podSpec.containers) {
        expect(container.livenessProbe, `${label(workload, container)} livenessProbe`).toBeDefined();
        expect(container.readinessProbe, `${label(workload, container)} readinessProbe`).toBeDefined();
      }
    }
    for (const entry of appContainers(objects)) {
      const { container, workload, service } = entry;
      const where = label(workload, container);
      const port = Number(configured(entry, service.portVariable, objects));
      expect(container.livenessProbe?.httpGet?.path, where).toBe('/healthz');
      expect(container.readinessProbe?.httpGet?.path, where).toBe('/readyz');
      expect(probePort(container.livenessProbe, container), `${where} liveness port`).toBe(port);
      expect(probePort(container.readinessProbe, container), `${where} readiness port`).toBe(port);
      if (container.startupProbe !== undefined)
        expect(container.startupProbe.httpGet?.path, where).toBe('/healthz');
    }
  });

  it('gives every container requests and limits; the workers sized from the benchmarks', () => {
    const objects = objectsOf(overlay);
    for (const workload of workloads(objects)) {
      for (const container of allContainers(workload)) {
        const where = label(workload, container);
        for (const resource of ['cpu', 'memory']) {
          const request = container.resources?.requests?.[resource];
          const limit = container.resources?.limits?.[resource];
          expect(request, `${where} requests.${resource}`).toBeDefined();
          expect(limit, `${where} limits.${resource}`).toBeDefined();
          expect(parseQuantity(request ?? 0), `${where} ${resource} request <= limit`).toBeLessThanOrEqual(
            parseQuantity(limit ?? 0),
          );
        }
      }
    }
    for (const { service, container, workload } of appContainers(objects)) {
      if (service.role !== 'worker') continue;
      const where = label(workload, container);
      const { requests = {}, limits = {} } = container.resources ?? {};
      expect(parseQuantity(requests['memory'] ?? 0), `${where} memory request`).toBeGreaterThanOrEqual(
        PEAK_RSS_BYTES,
      );
      expect(parseQuantity(limits['memory'] ?? 0), `${where} memory limit`).toBeGreaterThan(PEAK_RSS_BYTES);
      expect(parseQuantity(limits['cpu'] ?? 0), `${where} cpu limit`).toBeLessThanOrEqual(BENCHMARK_CORES);
    }
  });

  it('runs every pod as non-root, read-only, without privileges or capabilities', () => {
    const objects = objectsOf(overlay);
    for (const workload of workloads(objects)) {
      const pod = workload.podSpec.securityContext ?? {};
      expect(
        workload.podSpec.automountServiceAccountToken,
        `${label(workload)} automountServiceAccountToken`,
      ).toBe(false);
      expect(pod.runAsUser, `${label(workload)} runAsUser`).not.toBe(0);
      for (const container of allContainers(workload)) {
        const where = label(workload, container);
        const sc = container.securityContext ?? {};
        expect(sc.runAsNonRoot ?? pod.runAsNonRoot, `${where} runAsNonRoot`).toBe(true);
        expect(sc.runAsUser ?? pod.runAsUser, `${where} runAsUser`).not.toBe(0);
        expect((sc.seccompProfile ?? pod.seccompProfile)?.type, `${where} seccompProfile`).toBe(
          'RuntimeDefault',
        );
        expect(sc.allowPrivilegeEscalation, `${where} allowPrivilegeEscalation`).toBe(false);
        expect(sc.readOnlyRootFilesystem, `${where} readOnlyRootFilesystem`).toBe(true);
        expect(sc.privileged ?? false, `${where} privileged`).toBe(false);
        expect(sc.capabilities?.drop, `${where} capabilities.drop`).toEqual(['ALL']);
        expect(sc.capabilities?.add ?? [], `${where} capabilities.add`).toEqual([]);
      }
    }
    // With the root filesystem read-only, the services get a small emptyDir for temporary files.
    for (const { container, workload } of appContainers(objects)) {
      const mount = container.volumeMounts?.find((m) => m.mountPath === '/tmp');
      const volume = workload.podSpec.volumes?.find((v) => v.name === mount?.name);
      expect(volume?.emptyDir?.sizeLimit, `${label(workload, container)} /tmp emptyDir`).toBeDefined();
    }
  });

  it('lets a worker finish a large layer on shutdown, and rolls out without stopping work first', () => {
    const objects = objectsOf(overlay);
    for (const { service, workload } of appContainers(objects)) {
      const grace = workload.podSpec.terminationGracePeriodSeconds;
      expect(grace, `${label(workload)} terminationGracePeriodSeconds`).toBeDefined();
      if (service.role === 'worker') {
        expect(grace, `${label(workload)} terminationGracePeriodSeconds`).toBeGreaterThanOrEqual(
          MIN_WORKER_GRACE_S,
        );
      }
      const strategy = (workload.object as unknown as IDeployment).spec?.strategy;
      expect(strategy?.type, `${label(workload)} strategy`).toBe('RollingUpdate');
      expect(strategy?.rollingUpdate?.maxUnavailable, `${label(workload)} maxUnavailable`).toBe(0);
    }
  });

  it('sets only variables the config schemas know, every required one, and secrets from Secrets', () => {
    const objects = objectsOf(overlay);
    const checked = [
      ...appContainers(objects).map((a) => ({ ...a, schema: a.service.schema })),
      ...scheduledContainers(objects),
    ];
    expect(checked.length).toBeGreaterThan(Object.keys(SERVICES).length);
    for (const { schema, container, workload } of checked) {
      const where = label(workload, container);
      const env = containerEnv(container, objects);
      const names = env.map((e) => e.name);
      const known = new Set([...Object.keys(schema), ...SDK_ENV]);
      expect(
        names.filter((n) => !known.has(n)),
        `${where}: variables no schema knows`,
      ).toEqual([]);
      const required = Object.entries(schema)
        .filter(([, f]) => f.required)
        .map(([n]) => n);
      expect(
        required.filter((n) => !names.includes(n)),
        `${where}: required variables not set`,
      ).toEqual([]);
      const localDefaults = Object.entries(schema)
        .filter(([, f]) => isLocalDefault(f.fallback?.()))
        .map(([n]) => n);
      expect(
        localDefaults.filter((n) => !names.includes(n)),
        `${where}: variables whose defaults only work on a developer machine`,
      ).toEqual([]);
      const secretNames = new Set([
        ...Object.entries(schema)
          .filter(([, f]) => f.secret)
          .map(([n]) => n),
        ...SDK_ENV,
      ]);
      for (const entry of env) {
        if (secretNames.has(entry.name))
          expect(entry.source.kind, `${where} ${entry.name} source`).toBe('Secret');
      }
    }
  });

  it('runs the store maintenance the CLI has as CronJobs, one run at a time, never restarted in place', () => {
    const objects = objectsOf(overlay);
    const scheduled = scheduledContainers(objects);
    expect(scheduled.map((s) => s.command).sort()).toEqual(Object.keys(SCHEDULED).sort());
    const cli = readFileSync(join(REPO_ROOT, 'apps', 'cli', 'src', 'main.ts'), 'utf8');
    for (const { command, container, workload } of scheduled) {
      const where = label(workload, container);
      expect(cli, `${where}: the CLI has no "${command}" command`).toContain(`case '${command}':`);
      expect(workload.object.kind, where).toBe('CronJob');
      const spec = (workload.object as unknown as { spec: ICronJob['spec'] }).spec;
      expect(spec?.schedule, where).toMatch(/^(\S+ ){4}\S+$/);
      expect(spec?.concurrencyPolicy, where).toBe('Forbid');
      expect(spec?.jobTemplate.spec?.activeDeadlineSeconds, where).toBeGreaterThan(0);
      expect(workload.podSpec.restartPolicy, where).toBe('Never');
      const mount = container.volumeMounts?.find((m) => m.mountPath === '/tmp');
      const volume = workload.podSpec.volumes?.find((v) => v.name === mount?.name);
      expect(volume?.emptyDir?.sizeLimit, `${where} /tmp emptyDir`).toBeDefined();
    }
  });

  it('refers only to ConfigMaps and Secrets it renders, or to the documented external Secrets', () => {
    const objects = objectsOf(overlay);
    const dev = objectsOf('dev');
    const external = new Set<string>();
    for (const workload of workloads(objects)) {
      for (const ref of podReferences(workload.podSpec)) {
        const where = `${label(workload)} ${ref.from}: ${ref.kind} ${ref.name}`;
        const object = findObject(objects, ref.kind, ref.name);
        if (object === undefined) {
          expect(ref.kind, where).toBe('Secret');
          external.add(ref.name);
          // The dev overlay generates every Secret, so it shows the shape production must provide.
          const reference = objectsOfKind(dev, 'Secret').find(
            (s) => generatorName(s.metadata.name) === ref.name,
          );
          expect(reference, `${where}: no Secret of that name in the dev overlay`).toBeDefined();
          if (ref.key !== undefined && reference !== undefined) {
            expect(Object.keys(dataOf(reference)), where).toContain(ref.key);
          }
        } else if (ref.key !== undefined && !ref.optional) {
          expect(Object.keys(dataOf(object)), where).toContain(ref.key);
        }
      }
    }
    expect([...external].sort()).toEqual(expected.externalSecrets);
  });

  it('expands $(VAR) only from variables defined before it', () => {
    const objects = objectsOf(overlay);
    for (const workload of workloads(objects)) {
      for (const container of allContainers(workload)) {
        const defined: string[] = [];
        for (const env of container.env ?? []) {
          for (const ref of variableReferences(env.value ?? '')) {
            expect(defined, `${label(workload, container)} env ${env.name} uses $(${ref})`).toContain(ref);
          }
          defined.push(env.name);
        }
        for (const word of [...(container.command ?? []), ...(container.args ?? [])]) {
          for (const ref of variableReferences(word)) {
            expect(defined, `${label(workload, container)} command uses $(${ref})`).toContain(ref);
          }
        }
      }
    }
  });

  it('keeps one pod of each service evictable at a time (PodDisruptionBudgets)', () => {
    const objects = objectsOf(overlay);
    const pdbs = objectsOfKind<IPodDisruptionBudget>(objects, 'PodDisruptionBudget');
    for (const { workload } of appContainers(objects)) {
      const matching = pdbs.filter((pdb) =>
        Object.entries(pdb.spec?.selector?.matchLabels ?? {}).every(([k, v]) => workload.podLabels[k] === v),
      );
      expect(matching.length, `${label(workload)}: PodDisruptionBudgets selecting it`).toBe(1);
      // maxUnavailable (not minAvailable): a single replica can still be drained.
      expect(matching[0]?.spec?.maxUnavailable, label(workload)).toBe(1);
    }
  });

  it('puts everything in its namespace, which enforces the restricted pod security profile', () => {
    const objects = objectsOf(overlay);
    const namespaces = objectsOfKind(objects, 'Namespace');
    expect(namespaces.length).toBe(1);
    const [namespace] = namespaces;
    expect(namespace?.metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
    for (const object of objects) {
      if (object.kind === 'Namespace') continue;
      expect(object.metadata.namespace, `${object.kind}/${object.metadata.name}`).toBe(
        namespace?.metadata.name,
      );
    }
  });

  it(`autoscales the workers (${expected.autoscaler}) on the load of queues that exist`, () => {
    const objects = objectsOf(overlay);
    const scaledObjects = objectsOfKind<IScaledObject>(objects, 'ScaledObject');
    const hpas = objectsOfKind<IHorizontalPodAutoscaler>(objects, 'HorizontalPodAutoscaler');
    const workers = appContainers(objects).filter((a) => a.service.role === 'worker');
    const apis = appContainers(objects).filter((a) => a.service.role === 'api');

    const targets: string[] = [];
    const queues: string[] = [];
    const behaviours: {
      scaleDown?: {
        stabilizationWindowSeconds?: number;
        policies?: { type: string; value: number; periodSeconds: number }[];
      };
    }[] = [];
    const minimums: number[] = [];
    for (const so of scaledObjects) {
      targets.push(so.spec.scaleTargetRef.name);
      minimums.push(so.spec.minReplicaCount ?? 0);
      expect(so.spec.maxReplicaCount ?? 0).toBeGreaterThan(so.spec.minReplicaCount ?? 0);
      behaviours.push(so.spec.advanced?.horizontalPodAutoscalerConfig?.behavior ?? {});
      // Scaling to zero waits for the cooldown after the query last saw a job.
      expect(so.spec.cooldownPeriod ?? 300).toBeGreaterThanOrEqual(MIN_SCALE_DOWN_WINDOW_S);
      expect(so.spec.triggers.length).toBeGreaterThan(0);
      for (const trigger of so.spec.triggers) {
        expect(trigger.type).toBe('prometheus');
        const query = trigger.metadata['query'] ?? '';
        expectOneReplicaCounted(query);
        expect(labelValues(query, 'state').sort(), query).toEqual(LOAD_STATES);
        const named = labelValues(query, 'queue');
        expect(named.length, query).toBeGreaterThan(0);
        queues.push(...named);
        expect(Number(trigger.metadata['threshold']), query).toBeGreaterThan(0);
        expect(new URL(trigger.metadata['serverAddress'] ?? '').protocol).toMatch(/^https?:$/);
      }
    }
    const adapterRules = parseYaml(
      readFileSync(join(INFRA_DIR, 'components/hpa/prometheus-adapter-rules.yaml'), 'utf8'),
    ) as {
      rules: { external: { seriesQuery: string; name: { as: string }; metricsQuery: string }[] };
    };
    for (const hpa of hpas) {
      targets.push(hpa.spec?.scaleTargetRef.name ?? '');
      expect(hpa.spec?.scaleTargetRef.kind).toBe('Deployment');
      minimums.push(hpa.spec?.minReplicas ?? 1);
      expect(hpa.spec?.maxReplicas ?? 0).toBeGreaterThan(hpa.spec?.minReplicas ?? 1);
      behaviours.push(hpa.spec?.behavior ?? {});
      for (const metric of hpa.spec?.metrics ?? []) {
        expect(metric.type).toBe('External');
        const name = metric.external?.metric.name;
        const rule = adapterRules.rules.external.find((r) => r.name.as === name);
        expect(rule, `prometheus-adapter rule for ${name}`).toBeDefined();
        expect(rule?.seriesQuery.startsWith(`${QUEUE_JOBS_METRIC}{`)).toBe(true);
        expectOneReplicaCounted(rule?.metricsQuery ?? '');
        expect(labelValues(rule?.metricsQuery ?? '', 'state').sort()).toEqual(LOAD_STATES);
        const selector = metric.external?.metric.selector;
        const named = [
          ...Object.entries(selector?.matchLabels ?? {})
            .filter(([k]) => k === 'queue')
            .map(([, v]) => v),
          ...(selector?.matchExpressions ?? [])
            .filter((e) => e.key === 'queue' && e.operator === 'In')
            .flatMap((e) => e.values ?? []),
        ];
        expect(named.length, `${hpa.metadata?.name} queue selector`).toBeGreaterThan(0);
        queues.push(...named);
      }
    }

    for (const queue of queues) expect(ALL_QUEUES, `autoscaler queue ${queue}`).toContain(queue);
    for (const behaviour of behaviours) {
      const down = behaviour.scaleDown;
      expect(down?.stabilizationWindowSeconds ?? 300).toBeGreaterThanOrEqual(MIN_SCALE_DOWN_WINDOW_S);
      for (const policy of down?.policies ?? []) {
        expect(policy).toEqual({ type: 'Pods', value: 1, periodSeconds: policy.periodSeconds });
        expect(policy.periodSeconds).toBeGreaterThanOrEqual(60);
      }
    }
    switch (expected.autoscaler) {
      case 'none':
        expect(targets).toEqual([]);
        break;
      case 'keda':
      case 'hpa':
        expect(expected.autoscaler === 'keda' ? hpas : scaledObjects).toEqual([]);
        // Each worker has exactly one autoscaler, which owns its replica count; the api has none.
        expect([...targets].sort()).toEqual(workers.map((w) => w.workload.object.metadata.name).sort());
        for (const { workload } of workers) {
          expect(
            (workload.object as unknown as IDeployment).spec?.replicas,
            `${label(workload)} replicas`,
          ).toBeUndefined();
        }
        for (const { workload } of apis) expect(targets).not.toContain(workload.object.metadata.name);
        // Every queue is worked by some autoscaled worker.
        expect([...new Set(queues)].sort()).toEqual([...ALL_QUEUES].sort());
        for (const min of minimums) expect(min).toBeGreaterThanOrEqual(expected.minWorkerReplicas);
        break;
    }
  });
});

describe('overlay dev (self-contained)', () => {
  it('gives every service a configuration its schema accepts', () => {
    const objects = objectsOf('dev');
    for (const entry of appContainers(objects)) {
      const values = Object.fromEntries(
        containerEnv(entry.container, objects).map((e) => [e.name, envValue(e, objects)]),
      );
      expect(
        () => parseEnv(entry.service.schema, values),
        label(entry.workload, entry.container),
      ).not.toThrow();
    }
  });

  it('points the services at the in-cluster Redis and S3 store', () => {
    const objects = objectsOf('dev');
    const services = objectsOfKind<IService>(objects, 'Service');
    for (const entry of appContainers(objects)) {
      for (const variable of ['STEVEDORE_REDIS_URL', 'STEVEDORE_S3_ENDPOINT']) {
        const url = new URL(configured(entry, variable, objects) ?? '');
        const service = services.find((s) => s.metadata?.name === url.hostname);
        expect(service, `${label(entry.workload)} ${variable} host ${url.hostname}`).toBeDefined();
        expect(service?.spec?.ports?.map((p) => String(p.port))).toContain(url.port);
      }
    }
  });

  it('runs Redis as BullMQ requires: noeviction, append-only, on a persistent volume', () => {
    const objects = objectsOf('dev');
    const redis = workloads(objects).filter((w) =>
      w.podSpec.containers.some((c) => c.image?.startsWith('redis:')),
    );
    expect(redis.map((w) => `${w.object.kind}/${w.object.metadata.name}`)).toEqual([
      'StatefulSet/stevedore-redis',
    ]);
    const [workload] = redis;
    const container = workload?.podSpec.containers[0];
    const configMount = container?.volumeMounts?.find((m) => m.mountPath === '/etc/redis');
    const configVolume = workload?.podSpec.volumes?.find((v) => v.name === configMount?.name);
    const config = findObject(objects, 'ConfigMap', configVolume?.configMap?.name ?? '');
    const conf = (config === undefined ? {} : dataOf(config))['redis.conf'] ?? '';
    const lines = conf.split('\n').map((l) => l.trim());
    expect(lines).toContain('maxmemory-policy noeviction');
    expect(lines).toContain('appendonly yes');
    expect(container?.command?.slice(0, 2)).toEqual(['redis-server', '/etc/redis/redis.conf']);
    const dir = lines.find((l) => l.startsWith('dir '))?.slice('dir '.length);
    const dataMount = container?.volumeMounts?.find((m) => m.mountPath === dir);
    const claims = (
      (workload?.object['spec'] as { volumeClaimTemplates?: { metadata: { name: string } }[] } | undefined)
        ?.volumeClaimTemplates ?? []
    ).map((c) => c.metadata.name);
    expect(claims).toContain(dataMount?.name);
  });
});
