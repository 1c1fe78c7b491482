/**
 * Canonical JSON (RFC 8785, JSON Canonicalization Scheme) for the values the log
 * stores: objects with keys sorted by UTF-16 code units, no whitespace, strings and
 * numbers serialised as ECMAScript's JSON.stringify does (which is what RFC 8785 §3.2.2
 * specifies). Log leaves are these exact bytes, so anyone can recompute their hashes;
 * Rekor-style entry bodies are canonicalised the same way.
 *
 * Only finite numbers are accepted (the log holds integers); `undefined` members are
 * dropped as JSON.stringify drops them.
 */
export type CanonicalValue = string | number | boolean | null | readonly CanonicalValue[] | { readonly [key: string]: CanonicalValue | undefined };

export function canonicalJson(value: CanonicalValue): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError('canonical JSON has no representation for a non-finite number');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${(value as readonly CanonicalValue[]).map(canonicalJson).join(',')}]`;
  const object = value as { readonly [key: string]: CanonicalValue | undefined };
  const members = Object.keys(object)
    .filter((key) => object[key] !== undefined)
    .sort()
    .map((key) => `${JSON.stringify(key)}:${canonicalJson(object[key] as CanonicalValue)}`);
  return `{${members.join(',')}}`;
}

export function canonicalBytes(value: CanonicalValue): Buffer {
  return Buffer.from(canonicalJson(value), 'utf8');
}
