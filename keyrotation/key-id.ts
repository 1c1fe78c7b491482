/**
 * Key names and version ids. A key has a stable name (what policies and requests use,
 * e.g. `demo-release`) and numbered versions; `keyId` = `<name>@<version>` names one.
 */
const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const KEY_ID = /^([a-z0-9][a-z0-9._-]{0,62})@([1-9][0-9]{0,8})$/;

export interface KeyReference {
  readonly name: string;
  /** Undefined when the caller named the key, not a version: use the active version. */
  readonly version: number | undefined;
}

export function isKeyName(value: string): boolean {
  return NAME.test(value);
}

export function formatKeyId(name: string, version: number): string {
  return `${name}@${version}`;
}

/** Parses `name` or `name@version`; null for anything else. */
export function parseKeyReference(value: string): KeyReference | null {
  const versioned = KEY_ID.exec(value);
  if (versioned !== null) return { name: versioned[1] ?? '', version: Number(versioned[2]) };
  if (NAME.test(value)) return { name: value, version: undefined };
  return null;
}
