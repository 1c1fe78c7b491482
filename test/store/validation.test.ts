/**
 * The backend-neutral validators (store/validation.ts) on their own, with rows shaped
 * as any driver returns them: what the SQLite tests cannot produce through SQLite.
 */
import { describe, expect, it } from 'vitest';
import { canonicalTimestamp, countFromRow, requireIncrements, tokenUseFromRow } from '../../store/validation.js';
import { requestHash } from './sqlite-fixtures.js';

describe('countFromRow', () => {
  it('accepts safe non-negative counts as numbers, bigints or decimal text', () => {
    expect(countFromRow(0)).toBe(0);
    expect(countFromRow(42)).toBe(42);
    expect(countFromRow(42n)).toBe(42);
    expect(countFromRow('42')).toBe(42);
    expect(countFromRow(String(Number.MAX_SAFE_INTEGER))).toBe(Number.MAX_SAFE_INTEGER);
  });

  it.each([-1, 1.5, Number.NaN, 2 ** 53, -1n, 2n ** 53n, '', '-1', '01', '1e3', ' 1', '9007199254740992', null, undefined])(
    'reports %s as STORE_CORRUPT',
    (value) => {
      expect(() => countFromRow(value)).toThrow(expect.objectContaining({ code: 'STORE_CORRUPT' }));
    },
  );
});

describe('tokenUseFromRow', () => {
  const row = {
    issuer: 'https://issuer.example',
    token_id: 'jti',
    request_hash: requestHash('r'),
    state: 'done',
    response: '{"ok":true}',
    created_at: '2025-01-02T03:00:00.000Z',
    expires_at: '2025-01-02T04:00:00.000Z',
  };

  it('turns a valid row into a frozen record', () => {
    const record = tokenUseFromRow(row);
    expect(record).toEqual({
      issuer: row.issuer,
      tokenId: 'jti',
      requestHash: row.request_hash,
      state: 'done',
      response: '{"ok":true}',
      createdAt: row.created_at,
      expiresAt: row.expires_at,
    });
    expect(Object.isFrozen(record)).toBe(true);
  });

  it.each([
    ['not a record', null],
    ['an upper-case hash', { ...row, request_hash: row.request_hash.toUpperCase() }],
    ['a missing column', { ...row, expires_at: undefined }],
    ['a response of another type', { ...row, response: 7 }],
    ['a lone surrogate in the response', { ...row, response: '"\uD800"' }],
    ['an issuer with NUL', { ...row, issuer: 'a\0b' }],
  ])('reports %s as STORE_CORRUPT', (_label, bad) => {
    expect(() => tokenUseFromRow(bad)).toThrow(expect.objectContaining({ code: 'STORE_CORRUPT' }));
  });
});

describe('requireIncrements', () => {
  it('copies and freezes what it was given', () => {
    const input = [{ counter: 'c', window: 'total', limit: 2 }];
    const checked = requireIncrements(input);
    input[0]!.limit = 99;
    expect(checked).toEqual([{ counter: 'c', window: 'total', limit: 2 }]);
    expect(Object.isFrozen(checked)).toBe(true);
    expect(Object.isFrozen(checked[0])).toBe(true);
  });

  it('accepts the same counter in two windows, and one window for two counters', () => {
    expect(
      requireIncrements([
        { counter: 'c', window: 'total', limit: 1 },
        { counter: 'c', window: '2026-11-27T10:01', limit: 1 },
        { counter: 'd', window: '2026-11-27T10:01', limit: 1 },
      ]),
    ).toHaveLength(3);
  });
});

describe('canonicalTimestamp', () => {
  it('gives every accepted form the fixed-width toISOString form, so text order is time order', () => {
    expect(canonicalTimestamp('0001-01-01T00:00:00Z')).toBe('0001-01-01T00:00:00.000Z');
    expect(canonicalTimestamp('9999-12-31T23:59:59.999999999Z')).toBe('9999-12-31T23:59:59.999Z');
    expect(canonicalTimestamp('2025-01-02T03:04:05.1Z')).toBe('2025-01-02T03:04:05.100Z');
    expect(canonicalTimestamp('+012025-01-02T03:04:05.000Z')).toBeNull();
  });
});
