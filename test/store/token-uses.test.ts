/**
 * The token-use repository (single use of OIDC token ids) on both backends: the
 * contract in store.ts, its validation both ways, and that one token is claimed once
 * however many claims race for it, on one store or on two sharing the database (two
 * processes on one SQLite file, two replicas on one PostgreSQL database).
 */
import { describe, expect, it } from 'vitest';
import type { TokenClaimOutcome, TokenUseRecord } from '../../store/store.js';
import { MAX_ID_LENGTH, MAX_RESPONSE_BYTES } from '../../store/validation.js';
import { describeStore } from './backends.js';
import { requestHash, tokenClaim } from './sqlite-fixtures.js';

const ISSUER = tokenClaim('x').issuer;
const ANSWER = JSON.stringify({ signature: 'MEUCIQ…', keyId: 'demo-release@1' });

function pendingRecord(tokenId: string, seed = 'request'): TokenUseRecord {
  const claim = tokenClaim(tokenId, seed);
  return { ...claim, state: 'pending', response: null };
}


describeStore('token uses', (t) => {
  describe('claim', () => {
    it('records the first use and hands back the stored record to every later claim', async () => {
      expect(await t.store.tokenUses.claim(tokenClaim('jti-1'))).toEqual({ kind: 'claimed' });
      const record = await t.store.tokenUses.get(ISSUER, 'jti-1');
      expect(record).toEqual(pendingRecord('jti-1'));
      expect(Object.isFrozen(record)).toBe(true);

      // The same request again (a retry while the first is served) and another request.
      expect(await t.store.tokenUses.claim(tokenClaim('jti-1'))).toEqual({ kind: 'used', record: pendingRecord('jti-1') });
      const other = await t.store.tokenUses.claim(
        tokenClaim('jti-1', 'another request', { createdAt: '2025-01-02T03:30:00.000Z' }),
      );
      expect(other).toEqual({ kind: 'used', record: pendingRecord('jti-1') });
      expect(await t.store.tokenUses.get(ISSUER, 'jti-1')).toEqual(pendingRecord('jti-1'));
    });

    it('keys uses by issuer and token id together', async () => {
      expect((await t.store.tokenUses.claim(tokenClaim('shared'))).kind).toBe('claimed');
      expect((await t.store.tokenUses.claim(tokenClaim('shared', 'request', { issuer: 'https://gitlab.example' }))).kind).toBe(
        'claimed',
      );
      expect((await t.store.tokenUses.claim(tokenClaim('shared '))).kind).toBe('claimed');
      expect(await t.db.raw.value('SELECT COUNT(*) FROM token_uses')).toBe(3);
    });

    it('stores timestamps in the canonical toISOString form', async () => {
      await t.store.tokenUses.claim(
        tokenClaim('jti', 'r', { createdAt: '2025-01-02T03:00:00Z', expiresAt: '2025-01-02T04:00:00.5Z' }),
      );
      expect(await t.store.tokenUses.get(ISSUER, 'jti')).toMatchObject({
        createdAt: '2025-01-02T03:00:00.000Z',
        expiresAt: '2025-01-02T04:00:00.500Z',
      });
    });

    it('gives exactly one of 50 concurrent claims of one token `claimed`, and the rest its record', async () => {
      const claims = Array.from({ length: 50 }, (_, i) => tokenClaim('contended', `request ${i}`));
      // Plain calls and calls inside transactions, all in flight at once.
      const outcomes = await Promise.all(
        claims.map((claim, i) =>
          i % 3 === 0 ? t.store.transaction((tx) => tx.tokenUses.claim(claim)) : t.store.tokenUses.claim(claim),
        ),
      );
      const winners = outcomes.flatMap((outcome, i) => (outcome.kind === 'claimed' ? [i] : []));
      expect(winners).toHaveLength(1);
      const winner = claims[winners[0]!]!;
      const stored = await t.store.tokenUses.get(ISSUER, 'contended');
      expect(stored?.requestHash).toBe(winner.requestHash);
      for (const outcome of outcomes) {
        if (outcome.kind === 'used') expect(outcome.record).toEqual(stored);
      }
    });

    it('gives one claim per token across two stores sharing the database', async () => {
      const second = await t.db.open();
      try {
        const tokens = Array.from({ length: 40 }, (_, i) => `jti-${i}`);
        const runs: Promise<{ tokenId: string; outcome: TokenClaimOutcome }>[] = [];
        // Plain calls only: on SQLite each is one synchronous step, so the two connections
        // interleave call by call. A transaction held open across awaits on one connection
        // would make the other wait for its lock while blocking the very event loop that
        // must finish it; truly parallel SQLite writers are covered by
        // sqlite-processes.test.ts, and many PostgreSQL ones by postgres.test.ts.
        for (const tokenId of tokens) {
          for (const [index, s] of [t.store, second, second, t.store].entries()) {
            const claim = tokenClaim(tokenId, `attempt ${index}`);
            runs.push(s.tokenUses.claim(claim).then((outcome) => ({ tokenId, outcome })));
          }
        }
        const results = await Promise.all(runs);
        for (const tokenId of tokens) {
          const stored = await second.tokenUses.get(ISSUER, tokenId);
          const forToken = results.filter((r) => r.tokenId === tokenId);
          expect(forToken).toHaveLength(4);
          expect(forToken.filter((r) => r.outcome.kind === 'claimed')).toHaveLength(1);
          for (const r of forToken) if (r.outcome.kind === 'used') expect(r.outcome.record).toEqual(stored);
        }
      } finally {
        await second.close();
      }
    });
  });

  describe('complete', () => {
    it('stores the answer of a pending use, which every later claim then returns', async () => {
      await t.store.tokenUses.claim(tokenClaim('jti'));
      await t.store.tokenUses.complete(ISSUER, 'jti', requestHash('request'), ANSWER);
      const done: TokenUseRecord = { ...pendingRecord('jti'), state: 'done', response: ANSWER };
      expect(await t.store.tokenUses.get(ISSUER, 'jti')).toEqual(done);
      expect(await t.store.tokenUses.claim(tokenClaim('jti'))).toEqual({ kind: 'used', record: done });
      expect(await t.store.tokenUses.claim(tokenClaim('jti', 'other'))).toEqual({ kind: 'used', record: done });
    });

    it('fails with STORE_NOT_FOUND unless the use is pending for that very request, changing nothing', async () => {
      await expect(t.store.tokenUses.complete(ISSUER, 'never', requestHash('request'), ANSWER)).rejects.toMatchObject({
        code: 'STORE_NOT_FOUND',
        message: expect.stringMatching(/never recorded/),
      });

      await t.store.tokenUses.claim(tokenClaim('jti'));
      await expect(t.store.tokenUses.complete(ISSUER, 'jti', requestHash('other'), ANSWER)).rejects.toMatchObject({
        code: 'STORE_NOT_FOUND',
        message: expect.stringMatching(/pending for another request/),
      });
      expect(await t.store.tokenUses.get(ISSUER, 'jti')).toEqual(pendingRecord('jti'));

      await t.store.tokenUses.complete(ISSUER, 'jti', requestHash('request'), ANSWER);
      await expect(t.store.tokenUses.complete(ISSUER, 'jti', requestHash('request'), '{"other":1}')).rejects.toMatchObject({
        code: 'STORE_NOT_FOUND',
        message: expect.stringMatching(/already done/),
      });
      expect((await t.store.tokenUses.get(ISSUER, 'jti'))?.response).toBe(ANSWER);
    });

    it('accepts an answer of exactly 1 MiB and refuses one byte more, counting UTF-8 bytes', async () => {
      await t.store.tokenUses.claim(tokenClaim('big'));
      const tooBig = JSON.stringify('a'.repeat(MAX_RESPONSE_BYTES - 1));
      await expect(t.store.tokenUses.complete(ISSUER, 'big', requestHash('request'), tooBig)).rejects.toBeInstanceOf(
        TypeError,
      );
      // Fewer UTF-16 units than the limit, more UTF-8 bytes.
      const wide = JSON.stringify('é'.repeat(MAX_RESPONSE_BYTES / 2));
      expect(wide.length).toBeLessThan(MAX_RESPONSE_BYTES);
      await expect(t.store.tokenUses.complete(ISSUER, 'big', requestHash('request'), wide)).rejects.toBeInstanceOf(
        TypeError,
      );
      const largest = JSON.stringify('a'.repeat(MAX_RESPONSE_BYTES - 2));
      await t.store.tokenUses.complete(ISSUER, 'big', requestHash('request'), largest);
      expect((await t.store.tokenUses.get(ISSUER, 'big'))?.response).toBe(largest);
    });
  });

  describe('release', () => {
    it('deletes a pending use for that request, so the same token can be claimed again', async () => {
      await t.store.tokenUses.claim(tokenClaim('jti'));
      await t.store.tokenUses.release(ISSUER, 'jti', requestHash('request'));
      expect(await t.store.tokenUses.get(ISSUER, 'jti')).toBeNull();
      expect(await t.store.tokenUses.claim(tokenClaim('jti', 'retry'))).toEqual({ kind: 'claimed' });
    });

    it('leaves a use pending for another request alone', async () => {
      await t.store.tokenUses.claim(tokenClaim('jti'));
      await t.store.tokenUses.release(ISSUER, 'jti', requestHash('other'));
      expect(await t.store.tokenUses.get(ISSUER, 'jti')).toEqual(pendingRecord('jti'));
    });

    it('never deletes a done use, whatever hash it is given', async () => {
      await t.store.tokenUses.claim(tokenClaim('jti'));
      await t.store.tokenUses.complete(ISSUER, 'jti', requestHash('request'), ANSWER);
      await t.store.tokenUses.release(ISSUER, 'jti', requestHash('request'));
      await t.store.tokenUses.release(ISSUER, 'jti', requestHash('other'));
      await t.store.transaction((tx) => tx.tokenUses.release(ISSUER, 'jti', requestHash('request')));
      expect(await t.store.tokenUses.get(ISSUER, 'jti')).toMatchObject({ state: 'done', response: ANSWER });
      expect((await t.store.tokenUses.claim(tokenClaim('jti'))).kind).toBe('used');
    });

    it('does nothing, without failing, when there is no such use', async () => {
      await expect(t.store.tokenUses.release(ISSUER, 'never', requestHash('request'))).resolves.toBeUndefined();
    });
  });

  describe('releaseAbandoned', () => {
    it('deletes pending uses created before the given time, never done ones, and frees their tokens', async () => {
      await t.store.tokenUses.claim(tokenClaim('old', 'r', { createdAt: '2025-01-02T03:00:00.000Z' }));
      await t.store.tokenUses.claim(tokenClaim('done', 'r', { createdAt: '2025-01-02T03:00:00.000Z' }));
      await t.store.tokenUses.complete(ISSUER, 'done', requestHash('r'), ANSWER);
      await t.store.tokenUses.claim(tokenClaim('recent', 'r', { createdAt: '2025-01-02T03:05:00.000Z' }));

      expect(await t.store.tokenUses.releaseAbandoned('2025-01-02T03:01:00.000Z')).toBe(1);
      expect(await t.store.tokenUses.get(ISSUER, 'old')).toBeNull();
      expect((await t.store.tokenUses.get(ISSUER, 'done'))?.state).toBe('done');
      expect((await t.store.tokenUses.get(ISSUER, 'recent'))?.state).toBe('pending');
      expect((await t.store.tokenUses.claim(tokenClaim('old', 'r'))).kind).toBe('claimed');
      await expect(t.store.tokenUses.releaseAbandoned('yesterday')).rejects.toThrow(TypeError);
    });
  });

  describe('purgeExpired', () => {
    it('deletes uses that expired strictly before now, pending or done, and counts them', async () => {
      const expiries = ['2025-01-02T03:10:00.000Z', '2025-01-02T03:20:00.000Z', '2025-01-02T03:30:00.000Z'];
      for (const [i, expiresAt] of expiries.entries()) await t.store.tokenUses.claim(tokenClaim(`t${i}`, 'r', { expiresAt }));
      await t.store.tokenUses.complete(ISSUER, 't0', requestHash('r'), ANSWER);

      expect(await t.store.tokenUses.purgeExpired('2025-01-02T03:00:00.000Z')).toBe(0);
      expect(await t.store.tokenUses.purgeExpired('2025-01-02T03:20:00.000Z')).toBe(1);
      expect(await t.store.tokenUses.get(ISSUER, 't0')).toBeNull();
      expect(await t.store.tokenUses.get(ISSUER, 't1')).not.toBeNull();
      // Any ISO-8601 UTC form of the instant compares correctly.
      expect(await t.store.transaction((tx) => tx.tokenUses.purgeExpired('2025-01-02T03:30:00.001Z'))).toBe(2);
      expect(await t.db.raw.value('SELECT COUNT(*) FROM token_uses')).toBe(0);
    });

    it('lets a token be claimed again once its use was purged', async () => {
      await t.store.tokenUses.claim(tokenClaim('jti'));
      await t.store.tokenUses.purgeExpired('2025-01-02T05:00:00Z');
      expect((await t.store.tokenUses.claim(tokenClaim('jti'))).kind).toBe('claimed');
    });
  });

  describe('transactions', () => {
    it('commits claims and completions together, or rolls both back', async () => {
      await t.store.transaction(async (tx) => {
        expect((await tx.tokenUses.claim(tokenClaim('kept'))).kind).toBe('claimed');
        await tx.tokenUses.complete(ISSUER, 'kept', requestHash('request'), ANSWER);
      });
      await expect(
        t.store.transaction(async (tx) => {
          await tx.tokenUses.claim(tokenClaim('lost'));
          await tx.tokenUses.release(ISSUER, 'kept', requestHash('request'));
          await tx.tokenUses.purgeExpired('2030-01-01T00:00:00.000Z');
          throw new Error('roll back');
        }),
      ).rejects.toThrow('roll back');
      expect(await t.store.tokenUses.get(ISSUER, 'lost')).toBeNull();
      expect(await t.store.tokenUses.get(ISSUER, 'kept')).toMatchObject({ state: 'done' });
    });
  });

  describe('validation', () => {
    const hash = requestHash('request');

    it('refuses malformed claims with a TypeError, writing nothing', async () => {
      const bad = [
        tokenClaim(''),
        tokenClaim('x'.repeat(MAX_ID_LENGTH + 1)),
        tokenClaim('nul\0inside'),
        tokenClaim('lone \uD800 surrogate'),
        tokenClaim('jti', 'r', { issuer: '' }),
        tokenClaim('jti', 'r', { issuer: 'i'.repeat(MAX_ID_LENGTH + 1) }),
        tokenClaim('jti', 'r', { requestHash: hash.toUpperCase() }),
        tokenClaim('jti', 'r', { requestHash: hash.slice(1) }),
        tokenClaim('jti', 'r', { requestHash: `${hash.slice(1)}g` }),
        tokenClaim('jti', 'r', { createdAt: '2025-02-30T00:00:00.000Z' }),
        tokenClaim('jti', 'r', { createdAt: '2025-01-02 03:00:00' }),
        tokenClaim('jti', 'r', { expiresAt: '2025-01-02T04:00:00+01:00' }),
        tokenClaim('jti', 'r', { expiresAt: '2025-01-02T02:59:59.999Z' }),
        { ...tokenClaim('jti'), tokenId: 42 } as unknown as ReturnType<typeof tokenClaim>,
        null as unknown as ReturnType<typeof tokenClaim>,
      ];
      for (const claim of bad) {
        await expect(t.store.tokenUses.claim(claim)).rejects.toBeInstanceOf(TypeError);
        await expect(t.store.transaction((tx) => tx.tokenUses.claim(claim))).rejects.toBeInstanceOf(TypeError);
      }
      expect(await t.db.raw.value('SELECT COUNT(*) FROM token_uses')).toBe(0);
      // The longest ids are fine.
      const longest = tokenClaim('x'.repeat(MAX_ID_LENGTH), 'r', { issuer: 'i'.repeat(MAX_ID_LENGTH) });
      expect((await t.store.tokenUses.claim(longest)).kind).toBe('claimed');
    });

    it('refuses malformed arguments to the other calls with a TypeError', async () => {
      await t.store.tokenUses.claim(tokenClaim('jti'));
      const calls: (() => Promise<unknown>)[] = [
        () => t.store.tokenUses.complete(ISSUER, 'jti', hash, ''),
        () => t.store.tokenUses.complete(ISSUER, 'jti', hash, 'not json'),
        () => t.store.tokenUses.complete(ISSUER, 'jti', hash, '"lone \uDC00"'),
        () => t.store.tokenUses.complete(ISSUER, 'jti', 'abc', ANSWER),
        () => t.store.tokenUses.complete('', 'jti', hash, ANSWER),
        () => t.store.tokenUses.release(ISSUER, '', hash),
        () => t.store.tokenUses.release(ISSUER, 'jti', hash.toUpperCase()),
        () => t.store.tokenUses.get(ISSUER, ''),
        () => t.store.tokenUses.get(undefined as unknown as string, 'jti'),
        () => t.store.tokenUses.purgeExpired('yesterday'),
      ];
      for (const call of calls) await expect(call()).rejects.toBeInstanceOf(TypeError);
      expect(await t.store.tokenUses.get(ISSUER, 'jti')).toEqual(pendingRecord('jti'));
    });

    const damages: [string, string][] = [
      ['a request hash that is not hex SHA-256', "UPDATE token_uses SET request_hash = 'zz'"],
      ['an unknown state', "UPDATE token_uses SET state = 'used'"],
      ['a done use without its answer', "UPDATE token_uses SET state = 'done'"],
      ['a pending use with an answer', "UPDATE token_uses SET response = '{}'"],
      ['a timestamp not in canonical form', "UPDATE token_uses SET created_at = '2025-01-02T03:00:00Z'"],
      ['an expiry before the creation', "UPDATE token_uses SET expires_at = '2025-01-01T00:00:00.000Z'"],
      ['an answer that is not JSON', "UPDATE token_uses SET state = 'done', response = 'secret-ish junk'"],
    ];

    it.each(damages)('reports %s as STORE_CORRUPT on every read path, naming no stored value', async (_label, sql) => {
      await t.store.tokenUses.claim(tokenClaim('jti'));
      // Damage the table's own CHECKs would refuse, as a tampered database could hold.
      await t.db.raw.execUnchecked(sql);
      for (const read of [
        () => t.store.tokenUses.get(ISSUER, 'jti'),
        () => t.store.tokenUses.claim(tokenClaim('jti', 'other')),
        () => t.store.tokenUses.complete(ISSUER, 'jti', hash, ANSWER),
        () => t.store.transaction((tx) => tx.tokenUses.get(ISSUER, 'jti')),
      ]) {
        const error: unknown = await read().catch((e: unknown) => e);
        expect(error).toMatchObject({ code: 'STORE_CORRUPT' });
        expect((error as Error).message).not.toMatch(/junk|zz|2025|used/);
      }
    });
  });

  describe('closing', () => {
    it('fails every call after close with STORE_UNAVAILABLE', async () => {
      await t.store.close();
      const hash = requestHash('request');
      for (const call of [
        () => t.store.tokenUses.claim(tokenClaim('jti')),
        () => t.store.tokenUses.complete(ISSUER, 'jti', hash, ANSWER),
        () => t.store.tokenUses.release(ISSUER, 'jti', hash),
        () => t.store.tokenUses.get(ISSUER, 'jti'),
        () => t.store.tokenUses.purgeExpired('2025-01-01T00:00:00.000Z'),
      ]) {
        await expect(call()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
      }
    });
  });
});
