/**
 * An independent TOTP for tests: RFC 6238 §4 over RFC 4226 §5.3 (HMAC-SHA-1 from
 * node:crypto, dynamic truncation, modulo 10^digits), written from the RFCs and not
 * from the `otpauth` library the product uses, so the two check each other.
 */
import { createHmac } from 'node:crypto';

export function referenceHotp(secret: Uint8Array, counter: number, digits = 6): string {
  const message = Buffer.alloc(8);
  message.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac('sha1', secret).update(message).digest();
  const offset = mac[mac.length - 1]! & 0x0f;
  const binary = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(binary % 10 ** digits).padStart(digits, '0');
}

/** The code for Unix time `seconds` (T0 = 0, X = 30). */
export function referenceTotp(secret: Uint8Array, seconds: number, digits = 6): string {
  return referenceHotp(secret, Math.floor(seconds / 30), digits);
}
