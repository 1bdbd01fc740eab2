import { describe, expect, it } from 'vitest';
import { openApiPath } from './openapi.ts';
import { inputPath } from './validation.ts';

describe('openApiPath', () => {
  it.each([
    ['/v1/pulls', '/v1/pulls'],
    ['/v1/pulls/:id', '/v1/pulls/{id}'],
    ['/v1/images/*', '/v1/images/{ref}'],
    ['/a/:x/b/:y_z', '/a/{x}/b/{y_z}'],
  ])('%s → %s', (url, path) => {
    expect(openApiPath(url)).toBe(path);
  });
});

describe('inputPath', () => {
  it.each([
    ['body', '', 'body'],
    ['body', '/ref', 'body.ref'],
    ['body', '/layers/0/digest', 'body.layers[0].digest'],
    ['params', '/*', 'params.ref'],
    ['body', '/a~1b/c~0d', 'body.a/b.c~d'],
  ])('%s %s → %s', (dataVar, instancePath, path) => {
    expect(inputPath(dataVar, instancePath)).toBe(path);
  });
});
