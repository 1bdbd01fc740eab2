export * from './spec.ts';
export * from './retry.ts';
export * from './www-authenticate.ts';
export * from './credentials.ts';
export {
  Authenticator,
  DEFAULT_TOKEN_LIFETIME_S,
  parseTokenResponse,
  repositoryScope,
  tokenRenewAt,
} from './auth.ts';
export type { Logger } from './http.ts';
export { BlobStream } from './blob-stream.ts';
export * from './client.ts';
