/**
 * The JSON Schema (draft 2020-12) of the release manifest, generated from the zod
 * schema so the two cannot drift. `signet manifest schema` prints it; the copy in
 * schemas/release-manifest.schema.json is checked against this by a test.
 *
 * One rule cannot be written in JSON Schema and is documented instead: artifact names
 * are unique within a manifest.
 */
import { z } from 'zod';
import { releaseManifestSchema } from './schema.js';

export function releaseManifestJsonSchema(): Record<string, unknown> {
  // "input": the schema of documents as written (unknown fields allowed, as in-toto
  // asks consumers to ignore them).
  return z.toJSONSchema(releaseManifestSchema, { target: 'draft-2020-12', io: 'input', unrepresentable: 'throw' });
}

export function releaseManifestJsonSchemaText(): string {
  return `${JSON.stringify(releaseManifestJsonSchema(), null, 2)}\n`;
}
