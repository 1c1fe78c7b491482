/**
 * Crash safety of the log: `signet serve` killed with SIGKILL at random moments under
 * signing load, 50 times over the same database (every other time only after it has
 * answered a first request, so that the load is sure to have run). After every kill the log must verify
 * from scratch (every leaf, every checkpoint), and every signature a client received
 * must be in the log: audit before answer, even across crashes.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { createDevTokenMinter, DEV_AUDIENCE } from '../../cli/dev-issuer.js';
import { runLogVerify } from '../../cli/log-verify.js';
import { runCli, startServe } from '../helpers/cli.js';
import { freeServicePort } from '../../bench/local-service.js';

const KILLS = 50;

interface Received {
  readonly signature: string;
  readonly index: number;
}

describe('SIGKILL under load', () => {
  it(`the log verifies after each of ${KILLS} kills and holds every signature a client received`, { timeout: 300_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'signet-crash-'));
    const initialised = await runCli(['init', '--dir', dir, '--json', '--port', String(await freeServicePort())]);
    expect(initialised.code, initialised.stderr).toBe(0);
    const init = JSON.parse(initialised.stdout) as { config: string; url: string; caCert: string; clientCert: string; clientKey: string };
    const logKey = new Database(join(dir, 'signet.db'), { readonly: true })
      .prepare("SELECT public_key_pem FROM key_versions WHERE name = 'signet-log'")
      .pluck()
      .get() as string;
    const publicKey = join(dir, 'log-key.pem');
    (await import('node:fs')).writeFileSync(publicKey, logKey);
    const mint = await createDevTokenMinter(join(dir, 'oidc', 'dev-issuer-key.json'), DEV_AUDIENCE);
    const agentOptions = { connect: { ca: readFileSync(init.caCert), cert: readFileSync(init.clientCert), key: readFileSync(init.clientKey) } };

    const received: Received[] = [];
    let verifiedEntries = 0;
    for (let round = 0; round < KILLS; round += 1) {
      const serve = await startServe(init.config);
      const agent = new Agent(agentOptions);
      const tokens = await Promise.all(Array.from({ length: 400 }, () => mint({}, 600)));
      let stop = false;
      const client = async (): Promise<void> => {
        while (!stop) {
          const token = tokens.pop();
          if (token === undefined) return;
          try {
            const response = await request(`${init.url}/v1/sign`, {
              method: 'POST',
              dispatcher: agent,
              headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
              body: JSON.stringify({ project: 'example', digest: { algorithm: 'sha256', value: randomBytes(32).toString('hex') } }),
            });
            const body = (await response.body.json()) as { signature?: string; log?: { index: number } };
            if (response.statusCode === 200 && body.signature !== undefined && body.log !== undefined) {
              received.push({ signature: body.signature, index: body.log.index });
            }
          } catch {
            // The server died mid-request: nothing was received.
          }
        }
      };
      const receivedBefore = received.length;
      const clients = Array.from({ length: 8 }, client);
      // Odd rounds kill at a random moment from start-up on; even rounds once this
      // process has answered, then at a random moment: on a slow, busy machine the
      // first kind alone may kill before any request is answered.
      if (round % 2 === 0) {
        const deadline = Date.now() + 30_000;
        while (received.length === receivedBefore && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
        expect(received.length, `no answer within 30 s in round ${round + 1}`).toBeGreaterThan(receivedBefore);
      }
      await new Promise((resolve) => setTimeout(resolve, 30 + Math.random() * 300));
      const exit = await serve.stop('SIGKILL');
      expect(exit).toBeNull(); // killed, not exited
      stop = true;
      await Promise.all(clients);
      await agent.destroy();

      const audit = await runLogVerify({ url: undefined, ca: undefined, db: join(dir, 'signet.db'), origin: '127.0.0.1/log', publicKey, checkpoint: undefined });
      expect(audit.problem, `after kill ${round + 1}`).toBeNull();
      expect(audit.ok).toBe(true);
      verifiedEntries = audit.entries;
    }

    expect(received.length).toBeGreaterThanOrEqual(KILLS / 2); // the load really ran between kills (each even round)
    const db = new Database(join(dir, 'signet.db'), { readonly: true });
    const leafAt = db.prepare('SELECT leaf FROM log_entries WHERE idx = ?').pluck();
    for (const answer of received) {
      const leaf = leafAt.get(answer.index) as Buffer | undefined;
      expect(leaf, `entry ${answer.index}`).toBeDefined();
      expect((JSON.parse(leaf!.toString('utf8')) as { spec: { signature: { content: string } } }).spec.signature.content).toBe(answer.signature);
    }
    db.close();
    expect(verifiedEntries).toBeGreaterThan(received.length);
  });
});
