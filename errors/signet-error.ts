/**
 * Base of every typed error in Signet.
 *
 * Each area (signer, store, policy, …) defines its own subclass with a string-literal
 * `code` union. Messages are written for operators and must never contain a token,
 * PIN, TOTP secret or HSM object handle: the HTTP layer may show `message` to clients
 * for client faults, and the service log always records it. Foreign errors are kept
 * as `cause` for the service log only.
 */
export abstract class SignetError<Code extends string = string> extends Error {
  readonly code: Code;

  constructor(code: Code, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.name = new.target.name;
  }
}

export function isSignetError(value: unknown): value is SignetError {
  return value instanceof SignetError;
}
