/**
 * Client identity from mutual TLS.
 *
 * The TLS listener asks every client for a certificate but does not reject one that
 * sends none or an untrusted one (`rejectUnauthorized: false`), because the public
 * read endpoints need no client certificate. Routes that do (POST /v1/sign, the
 * officer routes) use this middleware, which requires all of:
 *   - a certificate was presented;
 *   - its extended key usage contains id-kp-clientAuth (RFC 5280 §4.2.1.12), so a
 *     server or code-signing certificate from the same CA cannot be used as a client;
 *   - OpenSSL verified its chain to a CA the listener trusts (`socket.authorized`),
 *     which includes its validity dates;
 *   - with `trustAnchors`, that chain ends at one of those CAs: the listener trusts the
 *     CI client CA and the officer CA together, and each route accepts only its own
 *     (checked here by signature, RFC 5280 §6.1, from the leaf through the intermediates
 *     the client sent to an anchor), so a CI certificate is no officer's and vice versa;
 *   - with `isRevoked`, the certificate has not been revoked by quorum (checked on every
 *     request: a revocation also stops connections that are already open).
 */
import { X509Certificate } from 'node:crypto';
import { TLSSocket, type DetailedPeerCertificate } from 'node:tls';
import type { HttpBindings } from '@hono/node-server';
import type { MiddlewareHandler } from 'hono';
import type { ClientCertificateIdentity } from '../service/sign-request.js';
import { HttpError } from './http-errors.js';

const ID_KP_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
/** Longest chain walked from the leaf to an anchor (leaf, intermediates, anchor). */
const MAX_CHAIN_DEPTH = 8;

export interface ClientCertificateOptions {
  /** PEM of the CA certificates this route accepts; without it, any CA the listener trusts. */
  readonly trustAnchors?: string | Buffer;
  /** Whether the certificate (lower-case hex SHA-256 of its DER) was revoked; throwing refuses the request. */
  readonly isRevoked?: (fingerprint: string) => Promise<boolean>;
}

/** Every certificate in a PEM text; TypeError when there is none or one does not parse. */
export function parsePemCertificates(pem: string | Buffer): X509Certificate[] {
  const blocks = String(pem).match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new TypeError('no certificate in the trust anchors');
  return blocks.map((block) => new X509Certificate(block));
}

function issuedBy(certificate: X509Certificate, issuer: X509Certificate): boolean {
  return certificate.checkIssued(issuer) && certificate.verify(issuer.publicKey);
}

/** The certificates the peer sent after its leaf (its intermediates), as Node reports the chain. */
function presentedChain(socket: TLSSocket): X509Certificate[] {
  const chain: X509Certificate[] = [];
  // Without a certificate Node answers an empty object, whatever its type says.
  let current: unknown = socket.getPeerCertificate(true);
  const seen = new Set<DetailedPeerCertificate>();
  while (isDetailedCertificate(current) && !seen.has(current) && chain.length < MAX_CHAIN_DEPTH) {
    seen.add(current);
    chain.push(new X509Certificate(current.raw));
    current = current.issuerCertificate;
  }
  return chain.slice(1);
}

function isDetailedCertificate(value: unknown): value is DetailedPeerCertificate {
  return typeof value === 'object' && value !== null && Buffer.isBuffer((value as { raw?: unknown }).raw);
}

/** Whether `leaf` chains by signature to one of `anchors` through `intermediates` (CA certificates only). */
export function chainsToAnchor(leaf: X509Certificate, intermediates: readonly X509Certificate[], anchors: readonly X509Certificate[]): boolean {
  let current = leaf;
  for (let depth = 0; depth < MAX_CHAIN_DEPTH; depth++) {
    if (anchors.some((anchor) => issuedBy(current, anchor))) return true;
    const next = intermediates.find((candidate) => candidate.ca && candidate !== current && issuedBy(current, candidate));
    if (next === undefined) return false;
    current = next;
  }
  return false;
}

export interface ClientCertificateVariables {
  clientCertificate: ClientCertificateIdentity;
  /** Why the TLS layer refused a certificate, kept for the service log, never sent. */
  authFailure: string;
}

export function requireClientCertificate(
  options: ClientCertificateOptions = {},
): MiddlewareHandler<{ Bindings: HttpBindings; Variables: ClientCertificateVariables }> {
  const anchors = options.trustAnchors === undefined ? undefined : parsePemCertificates(options.trustAnchors);
  const { isRevoked } = options;
  /**
   * A TLS connection's peer certificate cannot change after the handshake (Node does not
   * allow renegotiation to be started by a client), so the verified identity is worked
   * out once per connection (and route group) and reused by every request it carries.
   */
  const identities = new WeakMap<TLSSocket, ClientCertificateIdentity>();
  const admit = async (identity: ClientCertificateIdentity): Promise<void> => {
    if (isRevoked !== undefined && (await isRevoked(identity.fingerprint))) {
      throw new HttpError('CLIENT_CERT_REVOKED', 'the client certificate has been revoked');
    }
  };
  return async (c, next) => {
    const socket = c.env.incoming.socket;
    if (!(socket instanceof TLSSocket)) {
      throw new HttpError('CLIENT_CERT_REQUIRED', 'a client certificate is required');
    }
    const known = identities.get(socket);
    if (known !== undefined) {
      await admit(known);
      c.set('clientCertificate', known);
      await next();
      return;
    }
    const certificate = socket.getPeerX509Certificate();
    if (certificate === undefined) {
      throw new HttpError('CLIENT_CERT_REQUIRED', 'a client certificate is required');
    }
    // Usage is classified before trust only to give the clearer code: OpenSSL's own
    // purpose check would also fail such a certificate, and both outcomes refuse.
    // A certificate with no EKU extension at all passes OpenSSL (any purpose), so this
    // check is what rejects it.
    const extendedKeyUsage = certificate.keyUsage as string[] | undefined;
    if (extendedKeyUsage?.includes(ID_KP_CLIENT_AUTH) !== true) {
      throw new HttpError('CLIENT_CERT_WRONG_USAGE', 'the client certificate is not for client authentication');
    }
    if (!socket.authorized) {
      c.set('authFailure', String(socket.authorizationError));
      throw new HttpError('CLIENT_CERT_UNTRUSTED', 'the client certificate is not trusted');
    }
    if (anchors !== undefined && !chainsToAnchor(certificate, presentedChain(socket), anchors)) {
      c.set('authFailure', 'the certificate does not chain to a CA this route accepts');
      throw new HttpError('CLIENT_CERT_UNTRUSTED', 'the client certificate is not trusted');
    }
    const identity: ClientCertificateIdentity = {
      fingerprint: certificate.fingerprint256.replaceAll(':', '').toLowerCase(),
      subject: certificate.subject,
      issuer: certificate.issuer,
      serialNumber: certificate.serialNumber,
    };
    identities.set(socket, identity);
    await admit(identity);
    c.set('clientCertificate', identity);
    await next();
  };
}
