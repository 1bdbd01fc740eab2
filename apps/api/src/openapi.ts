/**
 * The OpenAPI 3.1 document, generated from the route schemas as routes are added (Fastify's
 * `onRoute` hook): no second, hand-kept copy of the API to drift. Routes with `schema.hide`
 * (Bull Board's) and the implicit HEAD routes are left out.
 */
import type { FastifySchema, RouteOptions } from 'fastify';

/** What a route's schema may carry beyond Fastify's validation keys. */
export interface RouteDoc {
  readonly summary?: string;
  readonly description?: string;
  readonly tags?: readonly string[];
  /** False for the unauthenticated probes. */
  readonly authenticated?: boolean;
  readonly hide?: boolean;
  readonly params?: JsonSchema;
  readonly body?: JsonSchema;
  readonly response?: Readonly<Record<string, JsonSchema & { readonly description?: string }>>;
  /** Content type of the 200 response when it is not JSON. */
  readonly produces?: string;
}

type JsonSchema = Readonly<Record<string, unknown>>;

/** A route's schema with its documentation (Fastify ignores the keys it does not use). */
export function routeSchema(doc: RouteDoc): FastifySchema {
  return doc;
}

interface Operation {
  summary?: string;
  description?: string;
  tags?: readonly string[];
  security?: readonly Record<string, readonly string[]>[];
  parameters?: unknown[];
  requestBody?: unknown;
  responses: Record<string, unknown>;
}

/** The name the wildcard parameter gets in the document. */
const WILDCARD_NAME = 'ref';

const STATUS_TEXT: Readonly<Record<string, string>> = {
  '200': 'OK',
  '202': 'Accepted',
  '204': 'No Content',
  '400': 'Bad request: the message names the input',
  '401': 'Missing or invalid credentials',
  '404': 'Not found',
  '500': 'Internal error',
  '503':
    'Unavailable: not ready (the message names the failing check), Redis unreachable, or a garbage collection running (see Retry-After)',
};

/** `/v1/pulls/:id` → `/v1/pulls/{id}`, `/v1/images/*` → `/v1/images/{ref}`. */
export function openApiPath(url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}').replace(/\*$/, `{${WILDCARD_NAME}}`);
}

export class OpenApiBuilder {
  readonly #paths: Record<string, Record<string, Operation>> = {};
  readonly #info: { title: string; version: string; description: string };

  constructor(info: { title: string; version: string; description: string }) {
    this.#info = info;
  }

  /** For Fastify's `onRoute` hook. */
  add(route: RouteOptions): void {
    const doc = (route.schema ?? {}) as RouteDoc;
    const methods = (Array.isArray(route.method) ? route.method : [route.method]).filter((m) => m !== 'HEAD');
    if (doc.hide === true || methods.length === 0) return;
    const operation: Operation = { responses: {} };
    if (doc.summary !== undefined) operation.summary = doc.summary;
    if (doc.description !== undefined) operation.description = doc.description;
    if (doc.tags !== undefined) operation.tags = doc.tags;
    if (doc.authenticated === false) operation.security = [];
    const params = (doc.params?.properties ?? {}) as Record<string, JsonSchema & { description?: string }>;
    const names = Object.keys(params);
    if (names.length > 0) {
      operation.parameters = names.map((name) => {
        const { description, ...schema } = params[name]!;
        return {
          name: name === '*' ? WILDCARD_NAME : name,
          in: 'path',
          required: true,
          ...(description === undefined ? {} : { description }),
          schema,
        };
      });
    }
    if (doc.body !== undefined) {
      operation.requestBody = { required: true, content: { 'application/json': { schema: doc.body } } };
    }
    for (const [status, schema] of Object.entries(doc.response ?? {})) {
      const { description, ...rest } = schema;
      const contentType = status === '200' && doc.produces !== undefined ? doc.produces : 'application/json';
      operation.responses[status] = {
        description: description ?? STATUS_TEXT[status] ?? status,
        ...(status === '204' ? {} : { content: { [contentType]: { schema: rest } } }),
      };
    }
    if (doc.authenticated !== false) {
      operation.responses['401'] ??= {
        description: STATUS_TEXT['401'],
        content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
      };
    }
    const path = openApiPath(route.url);
    const item = (this.#paths[path] ??= {});
    for (const method of methods) item[method.toLowerCase()] = operation;
  }

  document(errorSchema: JsonSchema): Record<string, unknown> {
    return {
      openapi: '3.1.0',
      info: this.#info,
      security: [{ bearerAuth: [] }],
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', description: 'STEVEDORE_API_TOKEN' },
          boardBasic: {
            type: 'http',
            scheme: 'basic',
            description: 'Bull Board at /admin/queues (or the bearer token)',
          },
        },
        schemas: { Error: errorSchema },
      },
      paths: this.#paths,
    };
  }
}
