/**
 * Validation of rendered objects against the Kubernetes JSON schemas (kubernetes-models, API
 * v1.27) and KEDA's CRD schemas (@kubernetes-models/keda). The compiled schemas check types,
 * required fields and enumerations; like `kubectl apply --validate=false` they let unknown
 * fields through, which the manifest checks cover for the fields that matter.
 */
import { ScaledObject, type IScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1';
import { Deployment, StatefulSet, type IDeployment, type IStatefulSet } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler, type IHorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { CronJob, Job, type ICronJob, type IJob } from 'kubernetes-models/batch/v1';
import { Ingress, type IIngress } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget, type IPodDisruptionBudget } from 'kubernetes-models/policy/v1';
import {
  ConfigMap,
  Namespace,
  PersistentVolumeClaim,
  Secret,
  Service,
  ServiceAccount,
  type IConfigMap,
  type INamespace,
  type IPersistentVolumeClaim,
  type ISecret,
  type IService,
  type IServiceAccount,
} from 'kubernetes-models/v1';
import type { K8sObject } from './kustomize.ts';

type Validator = (object: unknown) => void;

/** By `apiVersion/kind`: every kind the overlays use. An object of any other kind fails. */
const VALIDATORS: Readonly<Record<string, Validator>> = {
  'v1/ConfigMap': (o) => new ConfigMap(o as IConfigMap).validate(),
  'v1/Namespace': (o) => new Namespace(o as INamespace).validate(),
  'v1/PersistentVolumeClaim': (o) => new PersistentVolumeClaim(o as IPersistentVolumeClaim).validate(),
  'v1/Secret': (o) => new Secret(o as ISecret).validate(),
  'v1/Service': (o) => new Service(o as IService).validate(),
  'v1/ServiceAccount': (o) => new ServiceAccount(o as IServiceAccount).validate(),
  'apps/v1/Deployment': (o) => new Deployment(o as IDeployment).validate(),
  'apps/v1/StatefulSet': (o) => new StatefulSet(o as IStatefulSet).validate(),
  'batch/v1/Job': (o) => new Job(o as IJob).validate(),
  'batch/v1/CronJob': (o) => new CronJob(o as ICronJob).validate(),
  'policy/v1/PodDisruptionBudget': (o) => new PodDisruptionBudget(o as IPodDisruptionBudget).validate(),
  'autoscaling/v2/HorizontalPodAutoscaler': (o) =>
    new HorizontalPodAutoscaler(o as IHorizontalPodAutoscaler).validate(),
  'networking.k8s.io/v1/Ingress': (o) => new Ingress(o as IIngress).validate(),
  'keda.sh/v1alpha1/ScaledObject': (o) => new ScaledObject(o as IScaledObject).validate(),
};

/** Throws, naming the object, if it does not match its schema or its kind has no schema here. */
export function validateObject(object: K8sObject): void {
  const type = `${object.apiVersion}/${object.kind}`;
  const validate = VALIDATORS[type];
  const name = `${object.kind}/${object.metadata.name}`;
  if (validate === undefined) throw new Error(`${name}: no schema for ${type}`);
  try {
    validate(object);
  } catch (err) {
    throw new Error(
      `${name} does not match the ${type} schema: ${err instanceof Error ? err.message : String(err)}`,
      {
        cause: err,
      },
    );
  }
}
