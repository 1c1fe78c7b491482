/**
 * HTTPS GET of one small JSON document: an issuer's OpenID discovery document or its
 * JWKS. Owns the transport rules for everything the OIDC key cache fetches:
 *
 * - https only, certificate checked against the issuer's `caFile` when configured
 *   (instead of the system store, which is used otherwise);
 * - no redirect is ever followed: a 3xx could move the fetch to another host, and the
 *   host is what decides whose keys we trust (RFC 8725 §3.10, OpenID Connect
 *   Discovery 1.0 §4.3 / §7);
 * - one deadline for the whole exchange, so a server dripping bytes cannot hold a
 *   refresh open; a byte bound, enforced while reading, not after;
 * - `application/json` (or `application/jwk-set+json`, RFC 7517 §8.5) decoded as
 *   strict UTF-8 and parsed as one JSON object.
 *
 * Every failure is an IdentityError `JWKS_UNAVAILABLE` (a server-side fault) with the
 * detail, which never contains token data, in `cause` for the service log.
 */
import type { IncomingMessage } from 'node:http';
import { request } from 'node:https';
import { IdentityError } from './types.js';

export interface FetchJsonOptions {
  /** Deadline for connect, TLS, headers and body together. */
  readonly timeoutMs: number;
  /** Largest accepted body, in bytes. */
  readonly maxBytes: number;
  /** PEM CA certificates to trust instead of the system store. */
  readonly ca?: string | undefined;
}

/** The fetch seam of the key cache (tests substitute it to count or fail fetches). */
export type FetchJson = (url: string, options: FetchJsonOptions) => Promise<Record<string, unknown>>;

const ACCEPTED_MEDIA_TYPES: ReadonlySet<string> = new Set(['application/json', 'application/jwk-set+json']);

/** The one message of `JWKS_UNAVAILABLE`; the detail goes into `cause`. */
export function keysUnavailable(cause: unknown): IdentityError {
  return new IdentityError('JWKS_UNAVAILABLE', "the token issuer's signing keys are unavailable", { cause });
}

/** The URL if we may fetch it, else the refusal. */
function checkedUrl(url: string): URL | IdentityError {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (error) {
    return keysUnavailable(new Error('not a URL', { cause: error }));
  }
  if (parsed.protocol !== 'https:') return keysUnavailable(new Error(`refusing a non-https URL (${parsed.protocol})`));
  if (parsed.username !== '' || parsed.password !== '') return keysUnavailable(new Error('refusing a URL with credentials'));
  return parsed;
}

/** Fetches `url` and returns its body parsed as a JSON object. */
export function fetchJson(url: string, options: FetchJsonOptions): Promise<Record<string, unknown>> {
  const target = checkedUrl(url);
  if (target instanceof IdentityError) return Promise.reject(target);
  // Only origin and path go into error details: a query string is not ours to log.
  const where = `GET ${target.origin}${target.pathname}`;

  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (reason: string, cause?: unknown): void => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      req.destroy();
      reject(keysUnavailable(new Error(`${where}: ${reason}`, cause === undefined ? undefined : { cause })));
    };
    const succeed = (value: Record<string, unknown>): void => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      resolve(value);
    };

    const req = request(
      target,
      {
        method: 'GET',
        // A fresh connection per fetch: refreshes are rare, and no pooled socket outlives them.
        agent: false,
        ...(options.ca === undefined ? {} : { ca: options.ca }),
        rejectUnauthorized: true,
        minVersion: 'TLSv1.2',
        headers: {
          accept: 'application/json, application/jwk-set+json',
          // No compression: the byte bound must apply to what we parse.
          'accept-encoding': 'identity',
          'user-agent': 'signet-oidc',
        },
      },
      (res) => {
        readBody(res);
      },
    );

    const deadline = setTimeout(() => {
      fail(`no complete answer within ${options.timeoutMs} ms`);
    }, options.timeoutMs);

    req.on('error', (error) => {
      fail('request failed', error);
    });
    req.end();

    function readBody(res: IncomingMessage): void {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400) {
        // Never followed, whatever the Location: the trusted host is the configured one.
        fail(`redirect (${status}) refused`);
        return;
      }
      if (status !== 200) {
        fail(`HTTP status ${status}`);
        return;
      }
      const mediaType = (res.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
      if (!ACCEPTED_MEDIA_TYPES.has(mediaType)) {
        fail('content type is not application/json');
        return;
      }
      const encoding = res.headers['content-encoding'];
      if (encoding !== undefined && encoding.toLowerCase() !== 'identity') {
        fail('compressed answer refused');
        return;
      }
      const declared = Number(res.headers['content-length'] ?? '0');
      if (declared > options.maxBytes) {
        fail(`answer larger than ${options.maxBytes} bytes`);
        return;
      }
      const chunks: Buffer[] = [];
      let received = 0;
      res.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received > options.maxBytes) {
          fail(`answer larger than ${options.maxBytes} bytes`);
          return;
        }
        chunks.push(chunk);
      });
      res.on('error', (error) => {
        fail('answer interrupted', error);
      });
      res.on('close', () => {
        // After a complete answer this is a no-op: the promise has settled in 'end'.
        if (!res.complete) fail('answer interrupted');
      });
      res.on('end', () => {
        let parsed: unknown;
        try {
          parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks)));
        } catch (error) {
          fail('answer is not valid JSON', error);
          return;
        }
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
          fail('answer is not a JSON object');
          return;
        }
        succeed(parsed as Record<string, unknown>);
      });
    }
  });
}
