/**
 * Request validation messages that name the input: `body.ref is required`, `body.tag is not
 * allowed`, `body.ref must be string`. Fastify hands over Ajv's errors (one, `allErrors` off).
 */
import type { FastifySchemaValidationError } from 'fastify/types/schema.js';

/** The wildcard route parameter is called `ref` in messages, as in the OpenAPI document. */
function segment(name: string): string {
  return name === '*' ? 'ref' : name;
}

/** `body` + `/layers/0/digest` → `body.layers[0].digest`. */
export function inputPath(dataVar: string, instancePath: string): string {
  const parts = instancePath
    .split('/')
    .filter((p) => p !== '')
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  return parts.reduce((path, p) => (/^\d+$/.test(p) ? `${path}[${p}]` : `${path}.${segment(p)}`), dataVar);
}

export function describeValidationError(error: FastifySchemaValidationError, dataVar: string): string {
  const at = inputPath(dataVar, error.instancePath);
  const params = error.params;
  switch (error.keyword) {
    case 'required':
      return `${at}.${segment(String(params.missingProperty))} is required`;
    case 'additionalProperties':
      return `${at}.${segment(String(params.additionalProperty))} is not allowed`;
    default:
      return `${at} ${error.message ?? `fails ${error.keyword}`}`;
  }
}

/** Fastify's `schemaErrorFormatter`. */
export function formatValidationError(errors: FastifySchemaValidationError[], dataVar: string): Error {
  return new Error(errors.map((e) => describeValidationError(e, dataVar)).join('; '));
}
