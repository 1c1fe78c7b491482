/**
 * /openapi.json of the real development service, checked by an OpenAPI validator from
 * npm (@readme/openapi-parser: the OpenAPI 3.1 JSON Schema plus the rules the schema
 * cannot state, such as unique operationIds and declared path parameters). That it
 * documents exactly the routes served is checked in metrics.test.ts.
 */
import { compileErrors, validate } from '@readme/openapi-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDevEnvironment, devClientTls, httpsCall, startDevService, type StartedService } from '../helpers/dev-env.js';

let service: StartedService;
let ca: Buffer;

beforeAll(async () => {
  const env = await createDevEnvironment();
  service = await startDevService(env);
  ca = devClientTls(env).ca;
});

afterAll(async () => {
  await service.stop();
});

async function fetchDocument(): Promise<Record<string, any>> {
  const answer = await httpsCall(`${service.url}/openapi.json`, { ca });
  expect(answer.status).toBe(200);
  expect(answer.headers['content-type']).toMatch(/^application\/json/);
  return answer.json as Record<string, any>;
}

describe('/openapi.json', () => {
  it('is a valid OpenAPI 3.1 document', async () => {
    const document = await fetchDocument();
    expect(document.openapi).toMatch(/^3\.1\./);
    // Nothing outside the document is fetched: every $ref must be internal.
    const result = await validate(structuredClone(document) as never, { resolve: { external: false } });
    expect(result.valid ? '' : compileErrors(result)).toBe('');
    expect(result.valid).toBe(true);
  });

  it('is refused by the same validator once broken (the check has teeth)', async () => {
    const document = await fetchDocument();
    // A path parameter must be required (OpenAPI 3.1 §4.8.12.1): the mistake this test once caught.
    const parameters = document.paths['/v1/log/entries/{index}'].get.parameters as { in: string; required: boolean }[];
    const inPath = parameters.find((p) => p.in === 'path');
    expect(inPath?.required).toBe(true);
    inPath!.required = false;
    const result = await validate(document as never, { resolve: { external: false } });
    expect(result.valid).toBe(false);
  });

  it('describes the sign request with the schema that validates it', async () => {
    const document = await fetchDocument();
    const body = document.paths['/v1/sign'].post.requestBody.content['application/json'].schema;
    const schema = (body.$ref === undefined ? body : document.components.schemas[String(body.$ref).split('/').at(-1)!]) as {
      required?: string[];
      properties?: Record<string, unknown>;
    };
    // The fixed request fields (DESIGN.md): `project` required; keyId, digest, payload, format documented.
    expect(schema.required).toContain('project');
    expect(Object.keys(schema.properties ?? {})).toEqual(expect.arrayContaining(['project', 'keyId', 'digest', 'payload', 'format']));
  });
});
