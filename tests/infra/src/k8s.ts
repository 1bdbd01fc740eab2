/**
 * Reading rendered Kubernetes objects: the pod templates of workloads, the environment a container
 * gets (envFrom expanded, values resolved from rendered ConfigMaps and Secrets), and every
 * ConfigMap or Secret a pod refers to.
 */
import type { IContainer, IPodSpec } from 'kubernetes-models/v1';
import type { K8sObject } from './kustomize.ts';

/** Kinds whose objects carry a pod template, and where it is. */
const POD_TEMPLATE_PATHS: Readonly<Record<string, readonly string[]>> = {
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

export interface Workload {
  readonly object: K8sObject;
  readonly podSpec: IPodSpec;
  readonly podLabels: Readonly<Record<string, string>>;
}

export function workloads(objects: readonly K8sObject[]): Workload[] {
  return objects.flatMap((object) => {
    const path = POD_TEMPLATE_PATHS[object.kind];
    if (path === undefined) return [];
    let template: unknown = object;
    for (const key of path) template = (template as Record<string, unknown> | undefined)?.[key];
    const t = template as { metadata?: { labels?: Record<string, string> }; spec?: IPodSpec } | undefined;
    if (t?.spec === undefined) throw new Error(`${object.kind}/${object.metadata.name} has no pod template`);
    return [{ object, podSpec: t.spec, podLabels: t.metadata?.labels ?? {} }];
  });
}

export function objectsOfKind<T = K8sObject>(objects: readonly K8sObject[], kind: string): T[] {
  return objects.filter((o) => o.kind === kind) as T[];
}

export function findObject(objects: readonly K8sObject[], kind: string, name: string): K8sObject | undefined {
  return objects.find((o) => o.kind === kind && o.metadata.name === name);
}

/** The key-value data of a ConfigMap or Secret (Secret data base64-decoded, stringData merged). */
export function dataOf(object: K8sObject): Record<string, string> {
  const data = (object['data'] ?? {}) as Record<string, string>;
  if (object.kind === 'ConfigMap') return { ...data };
  const decoded = Object.fromEntries(
    Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]),
  );
  return { ...decoded, ...((object['stringData'] ?? {}) as Record<string, string>) };
}

export type EnvSource =
  | { readonly kind: 'value'; readonly value: string }
  | {
      readonly kind: 'ConfigMap' | 'Secret';
      readonly name: string;
      readonly key: string;
      readonly optional: boolean;
    }
  | { readonly kind: 'field' };

export interface EnvEntry {
  readonly name: string;
  readonly source: EnvSource;
}

/**
 * The variables a container gets, in the order Kubernetes applies them (envFrom sources, then
 * env; a later entry of the same name wins). envFrom must name a rendered ConfigMap or Secret:
 * otherwise the variable names would be unknown.
 */
export function containerEnv(container: IContainer, objects: readonly K8sObject[]): EnvEntry[] {
  const entries = new Map<string, EnvEntry>();
  for (const from of container.envFrom ?? []) {
    const ref = from.configMapRef ?? from.secretRef;
    const kind = from.configMapRef === undefined ? 'Secret' : 'ConfigMap';
    const name = ref?.name ?? '';
    const source = findObject(objects, kind, name);
    if (source === undefined) {
      throw new Error(
        `container ${container.name}: envFrom ${kind} ${name} is not in the rendered manifests`,
      );
    }
    for (const key of Object.keys(dataOf(source))) {
      const env = `${from.prefix ?? ''}${key}`;
      entries.delete(env);
      entries.set(env, { name: env, source: { kind, name, key, optional: ref?.optional ?? false } });
    }
  }
  for (const env of container.env ?? []) {
    const { configMapKeyRef, secretKeyRef } = env.valueFrom ?? {};
    const keyRef = configMapKeyRef ?? secretKeyRef;
    const source: EnvSource =
      env.valueFrom === undefined
        ? { kind: 'value', value: env.value ?? '' }
        : keyRef !== undefined
          ? {
              kind: configMapKeyRef === undefined ? 'Secret' : 'ConfigMap',
              name: keyRef.name ?? '',
              key: keyRef.key,
              optional: keyRef.optional ?? false,
            }
          : { kind: 'field' };
    entries.delete(env.name);
    entries.set(env.name, { name: env.name, source });
  }
  return [...entries.values()];
}

/**
 * The value of an entry: a literal, or the rendered ConfigMap's or Secret's value; undefined when
 * the source is not rendered (a Secret created outside kustomize) or is a field reference.
 */
export function envValue(entry: EnvEntry, objects: readonly K8sObject[]): string | undefined {
  const { source } = entry;
  switch (source.kind) {
    case 'value':
      return source.value;
    case 'field':
      return undefined;
    case 'ConfigMap':
    case 'Secret': {
      const object = findObject(objects, source.kind, source.name);
      return object === undefined ? undefined : dataOf(object)[source.key];
    }
  }
}

export interface Reference {
  readonly kind: 'ConfigMap' | 'Secret';
  readonly name: string;
  /** The key read, or undefined when the whole object is used (envFrom, a volume without items). */
  readonly key: string | undefined;
  readonly optional: boolean;
  /** Where, for messages. */
  readonly from: string;
}

/** Every ConfigMap and Secret a pod uses: environment, volumes and image pull secrets. */
export function podReferences(podSpec: IPodSpec): Reference[] {
  const refs: Reference[] = [];
  const containers = [...(podSpec.initContainers ?? []), ...podSpec.containers];
  for (const c of containers) {
    for (const from of c.envFrom ?? []) {
      if (from.configMapRef !== undefined) {
        const r = from.configMapRef;
        refs.push({
          kind: 'ConfigMap',
          name: r.name ?? '',
          key: undefined,
          optional: r.optional ?? false,
          from: `${c.name} envFrom`,
        });
      }
      if (from.secretRef !== undefined) {
        const r = from.secretRef;
        refs.push({
          kind: 'Secret',
          name: r.name ?? '',
          key: undefined,
          optional: r.optional ?? false,
          from: `${c.name} envFrom`,
        });
      }
    }
    for (const env of c.env ?? []) {
      const cm = env.valueFrom?.configMapKeyRef;
      const secret = env.valueFrom?.secretKeyRef;
      if (cm !== undefined) {
        refs.push({
          kind: 'ConfigMap',
          name: cm.name ?? '',
          key: cm.key,
          optional: cm.optional ?? false,
          from: `${c.name} env ${env.name}`,
        });
      }
      if (secret !== undefined) {
        refs.push({
          kind: 'Secret',
          name: secret.name ?? '',
          key: secret.key,
          optional: secret.optional ?? false,
          from: `${c.name} env ${env.name}`,
        });
      }
    }
  }
  for (const volume of podSpec.volumes ?? []) {
    const cm = volume.configMap;
    const secret = volume.secret;
    if (cm !== undefined) {
      const keys = cm.items?.map((i) => i.key) ?? [undefined];
      for (const key of keys) {
        refs.push({
          kind: 'ConfigMap',
          name: cm.name ?? '',
          key,
          optional: cm.optional ?? false,
          from: `volume ${volume.name}`,
        });
      }
    }
    if (secret !== undefined) {
      const keys = secret.items?.map((i) => i.key) ?? [undefined];
      for (const key of keys) {
        refs.push({
          kind: 'Secret',
          name: secret.secretName ?? '',
          key,
          optional: secret.optional ?? false,
          from: `volume ${volume.name}`,
        });
      }
    }
  }
  for (const pull of podSpec.imagePullSecrets ?? []) {
    refs.push({
      kind: 'Secret',
      name: pull.name ?? '',
      key: undefined,
      optional: false,
      from: 'imagePullSecrets',
    });
  }
  return refs;
}

/** kustomize's generated names end in `-` and a 10-character hash of the content. */
const NAME_HASH_SUFFIX = /-[bcdfghkmt2-9]{10}$/;

/** The name a generator was given (`stevedore-secrets-2fbdt7597c` → `stevedore-secrets`). */
export function generatorName(name: string): string {
  return name.replace(NAME_HASH_SUFFIX, '');
}

/** `$(NAME)` references in a string (Kubernetes expands them from the container's environment). */
export function variableReferences(text: string): string[] {
  return [...text.matchAll(/(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)].map((m) => m[1] ?? '');
}
