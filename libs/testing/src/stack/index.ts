export { startRedis, type RedisOptions, type RedisServer } from './redis.ts';
export {
  startRegistry,
  DEFAULT_TOKEN_EXPIRES_IN,
  TOKEN_ISSUER,
  TOKEN_SERVICE,
  type BasicRegistryServer,
  type RegistryAuth,
  type RegistryOptions,
  type RegistryServer,
  type TokenRegistryServer,
} from './registry.ts';
export type { TokenRequestRecord } from './token-server.ts';
export { PUBLIC_PREFIX, REGISTRY_LEEWAY_SECONDS, type ResourceActions } from './token-auth.ts';
export {
  startS3,
  DEFAULT_S3_BUCKET,
  DEFAULT_S3_REGION,
  type S3Info,
  type S3Options,
  type S3Server,
} from './s3.ts';
export {
  startFaultProxy,
  type FaultAction,
  type FaultProxy,
  type FaultProxyOptions,
  type FaultRule,
  type ProxiedRequest,
  type RequestFilter,
} from './fault-proxy.ts';
export {
  startStack,
  type BasicRegistryInfo,
  type RegistryInfo,
  type Stack,
  type StackInfo,
  type StackOptions,
  type TokenRegistryInfo,
} from './stack.ts';
export type { StackProvidedContext } from './provided-context.ts';
export { MissingProgramError, DEBIAN_PACKAGE_OF, type StackProgram } from './programs.ts';
export { isAlive } from './process.ts';
export { containerdConfig } from './containerd.ts';
