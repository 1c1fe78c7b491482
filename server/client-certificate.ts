/**
 * Client identity from mutual TLS.
 *
 * The TLS listener asks every client for a certificate but does not reject one that
 * sends none or an untrusted one (`rejectUnauthorized: false`), because the public
 * read endpoints need no client certificate. Routes that do (POST /v1/sign) use this
 * middleware, which requires all of:
 *   - a certificate was presented;
 *   - its extended key usage contains id-kp-clientAuth (RFC 5280 §4.2.1.12), so a
 *     server or code-signing certificate from the same CA cannot be used as a client;
 *   - OpenSSL verified its chain to the configured CI client CA (`socket.authorized`),
 *     which includes its validity dates.
 */
import { TLSSocket } from 'node:tls';
import type { HttpBindings } from '@hono/node-server';
import type { MiddlewareHandler } from 'hono';
import type { ClientCertificateIdentity } from '../service/sign-request.js';
import { HttpError } from './http-errors.js';

const ID_KP_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

export interface ClientCertificateVariables {
  clientCertificate: ClientCertificateIdentity;
  /** Why the TLS layer refused a certificate, kept for the service log, never sent. */
  authFailure: string;
}

/**
 * A TLS connection's peer certificate cannot change after the handshake (Node does not
 * allow renegotiation to be started by a client), so the verified identity is worked
 * out once per connection and reused by every request that connection carries.
 */
const identities = new WeakMap<TLSSocket, ClientCertificateIdentity>();

export function requireClientCertificate(): MiddlewareHandler<{ Bindings: HttpBindings; Variables: ClientCertificateVariables }> {
  return async (c, next) => {
    const socket = c.env.incoming.socket;
    if (!(socket instanceof TLSSocket)) {
      throw new HttpError('CLIENT_CERT_REQUIRED', 'a client certificate is required');
    }
    const known = identities.get(socket);
    if (known !== undefined) {
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
    const identity: ClientCertificateIdentity = {
      fingerprint: certificate.fingerprint256.replaceAll(':', '').toLowerCase(),
      subject: certificate.subject,
      issuer: certificate.issuer,
      serialNumber: certificate.serialNumber,
    };
    identities.set(socket, identity);
    c.set('clientCertificate', identity);
    await next();
  };
}
