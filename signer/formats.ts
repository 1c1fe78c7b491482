/**
 * Output formats a sign request may ask for (DESIGN.md, POST /v1/sign `format`).
 * The service implements the ones in IMPLEMENTED_FORMATS; the others are accepted
 * by policy files so that policies need not change when they land, and a request
 * for one answers FORMAT_UNSUPPORTED.
 */
export const SIGNATURE_FORMATS = ['raw', 'dsse', 'sigstore-bundle', 'pgp', 'cms'] as const;
export type SignatureFormat = (typeof SIGNATURE_FORMATS)[number];

export const IMPLEMENTED_FORMATS: ReadonlySet<SignatureFormat> = new Set<SignatureFormat>(['raw']);
