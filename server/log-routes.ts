/**
 * Public, read-only routes of the transparency log: the latest checkpoint and its
 * history, entries, and RFC 9162 proofs. Hashes are base64, as in C2SP checkpoints
 * and Sigstore bundles. No client certificate is needed.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { Env } from 'hono';
import type { TransparencyLog } from '../log/transparency-log.js';
import type { LogEntryRecord, SignetStore } from '../store/store.js';
import { HttpError } from './http-errors.js';
import { ErrorSchema } from './schemas.js';

const json = <T extends z.ZodType>(schema: T, description: string) => ({ description, content: { 'application/json': { schema } } });
const errors = { 400: json(ErrorSchema, 'Bad parameters'), 404: json(ErrorSchema, 'No such entry') };
const lookupErrors = { ...errors, 429: json(ErrorSchema, 'Too many lookups by leaf hash (LEAF_HASH_LOOKUPS_PER_SECOND); ask by index') };

const index = z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const size = z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER);

const EntrySchema = z
  .object({
    index: z.number().int(),
    kind: z.string(),
    leaf: z.string().openapi({ description: 'Base64 of the exact leaf bytes (canonical JSON); leafHash = SHA-256(0x00 ‖ leaf)' }),
    leafHash: z.string(),
    integratedTime: z.number().int(),
    linkedIndex: z.number().int().nullable(),
  })
  .openapi('LogEntry');

const CheckpointSchema = z.object({ size: z.number().int(), rootHash: z.string(), note: z.string(), createdAt: z.string() }).openapi('LogCheckpoint');

function entryView(entry: LogEntryRecord): z.infer<typeof EntrySchema> {
  return {
    index: entry.index,
    kind: entry.kind,
    leaf: entry.leaf.toString('base64'),
    leafHash: entry.leafHash.toString('base64'),
    integratedTime: entry.integratedTime,
    linkedIndex: entry.linkedIndex,
  };
}

/**
 * Lookups by leaf hash a process starts per second, and at most one at a time. On
 * SQLite a lookup seeks once per bucket of 256 entries (migration 7), about 12 ms on
 * the event loop at 1,000,000 entries, and anyone may ask: so their share of the
 * service is bounded (at 1,000,000 entries, an eighth of the main thread at most)
 * whatever arrives, and the surplus is refused with 429 rather than queued ahead of
 * signing. A lookup by index costs O(log n) reads and is not limited.
 */
export const LEAF_HASH_LOOKUPS_PER_SECOND = 10;

export function addLogRoutes<E extends Env>(app: OpenAPIHono<E>, log: TransparencyLog, store: SignetStore): void {
  let lookupRunning = false;
  let lookupWindowStart = 0;
  let lookupsInWindow = 0;
  const findByLeafHash = async (hash: Buffer): Promise<number | null> => {
    const now = Date.now();
    if (now - lookupWindowStart >= 1000) {
      lookupWindowStart = now;
      lookupsInWindow = 0;
    }
    if (lookupRunning || lookupsInWindow >= LEAF_HASH_LOOKUPS_PER_SECOND) {
      throw new HttpError('RATE_LIMITED', 'too many lookups by leaf hash; retry in a second, or ask by index');
    }
    lookupRunning = true;
    lookupsInWindow += 1;
    try {
      return await store.log.indexOfLeafHash(hash);
    } finally {
      lookupRunning = false;
    }
  };

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/log',
      summary: "The log's origin, id, public key and current size",
      responses: {
        200: json(z.object({ origin: z.string(), logId: z.string(), publicKeyPem: z.string(), treeSize: z.number().int() }).openapi('LogInfo'), 'Log'),
      },
    }),
    async (c) =>
      c.json({ origin: log.origin, logId: log.logId.toString('hex'), publicKeyPem: log.publicKeyPem, treeSize: await store.log.size() }, 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/log/checkpoint',
      summary: 'The latest signed checkpoint (C2SP signed note)',
      responses: { 200: { description: 'Checkpoint', content: { 'text/plain': { schema: z.string() } } } },
    }),
    async (c) => c.text((await log.checkpointCovering(0)).note, 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/log/checkpoints',
      summary: 'Earlier checkpoints, oldest first',
      request: { query: z.object({ after: z.coerce.number().int().min(0).default(0), limit: z.coerce.number().int().min(1).max(1000).default(100) }) },
      responses: { 200: json(z.object({ checkpoints: z.array(CheckpointSchema) }), 'Checkpoints'), 400: errors[400] },
    }),
    async (c) => {
      const { after, limit } = c.req.valid('query');
      // Every note handed out in a receipt so far is in the history it reads.
      await log.recordedSoFar();
      const list = await store.log.checkpoints(after, limit);
      return c.json({ checkpoints: list.map((cp) => ({ size: cp.size, rootHash: cp.rootHash.toString('base64'), note: cp.note, createdAt: cp.createdAt })) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/log/entries/{index}',
      summary: 'One log entry',
      request: { params: z.object({ index: index.openapi({ param: { name: 'index', in: 'path', required: true } }) }) },
      responses: { 200: json(EntrySchema, 'Entry'), ...errors },
    }),
    async (c) => c.json(entryView(await log.entry(c.req.valid('param').index)), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/log/entries',
      summary: 'Entries [start, end), at most 1000',
      request: { query: z.object({ start: index, end: index }) },
      responses: { 200: json(z.object({ entries: z.array(EntrySchema) }), 'Entries'), 400: errors[400] },
    }),
    async (c) => {
      const { start, end } = c.req.valid('query');
      if (end <= start || end - start > 1000) throw new HttpError('INVALID_REQUEST', 'need start < end ≤ start + 1000');
      return c.json({ entries: (await store.log.entries(start, end)).map(entryView) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/log/proof/inclusion',
      summary: 'RFC 9162 inclusion proof, by index or leaf hash (base64)',
      request: {
        query: z.object({ index: index.optional(), leafHash: z.string().max(64).optional(), treeSize: size.optional() }),
      },
      responses: {
        200: json(z.object({ index: z.number().int(), treeSize: z.number().int(), leafHash: z.string(), rootHash: z.string(), hashes: z.array(z.string()) }), 'Proof'),
        ...lookupErrors,
      },
    }),
    async (c) => {
      const query = c.req.valid('query');
      let at = query.index;
      if (at === undefined) {
        if (query.leafHash === undefined) throw new HttpError('INVALID_REQUEST', 'give index or leafHash');
        const found = await findByLeafHash(Buffer.from(query.leafHash, 'base64'));
        if (found === null) throw new HttpError('NOT_FOUND', 'no entry with that leaf hash');
        at = found;
      }
      const treeSize = query.treeSize ?? (await log.checkpointCovering(0)).size;
      const [entry, hashes, root] = await Promise.all([log.entry(at), log.inclusionProof(at, treeSize), log.root(treeSize)]);
      return c.json(
        { index: at, treeSize, leafHash: entry.leafHash.toString('base64'), rootHash: root.toString('base64'), hashes: hashes.map((h) => h.toString('base64')) },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/log/proof/consistency',
      summary: 'RFC 9162 consistency proof between two tree sizes',
      request: { query: z.object({ first: size, second: size }) },
      responses: { 200: json(z.object({ first: z.number().int(), second: z.number().int(), hashes: z.array(z.string()) }), 'Proof'), 400: errors[400] },
    }),
    async (c) => {
      const { first, second } = c.req.valid('query');
      const hashes = await log.consistencyProof(first, second);
      return c.json({ first, second, hashes: hashes.map((h) => h.toString('base64')) }, 200);
    },
  );
}
