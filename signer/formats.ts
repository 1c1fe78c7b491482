/**
 * Output formats a sign request may ask for (DESIGN.md, POST /v1/sign `format`).
 * The service implements the ones in IMPLEMENTED_FORMATS (service/sign-formats.ts
 * makes each); a format named here but not implemented is accepted by policy files,
 * so policies need not change when it lands, and a request for it answers
 * FORMAT_UNSUPPORTED.
 */
export const SIGNATURE_FORMATS = ['raw', 'dsse', 'sigstore-bundle', 'pgp', 'cms'] as const;
export type SignatureFormat = (typeof SIGNATURE_FORMATS)[number];

export const IMPLEMENTED_FORMATS: ReadonlySet<SignatureFormat> = new Set<SignatureFormat>(SIGNATURE_FORMATS);

/** Formats that sign the manifest itself, so a request must carry it as `payload`. */
export const PAYLOAD_FORMATS: ReadonlySet<SignatureFormat> = new Set<SignatureFormat>(['dsse', 'pgp']);
