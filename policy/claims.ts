/**
 * Claim matching for identity rules: exact values, one-of lists and path globs. Pure.
 * Claims come from a verified token but are still the CI user's data (branch names,
 * environment names): they are matched, never interpreted or echoed in messages.
 */
import type { ClaimMatcher } from './schema.js';

const compiled = new Map<string, RegExp>();

/**
 * Glob → anchored regular expression: `**` matches anything, `*` anything but "/",
 * `?` one character but "/"; every other character stands for itself.
 */
export function globToRegExp(glob: string): RegExp {
  let cached = compiled.get(glob);
  if (cached !== undefined) return cached;
  let source = '';
  for (let i = 0; i < glob.length; i += 1) {
    const char = glob[i] ?? '';
    if (char === '*' && glob[i + 1] === '*') {
      source += '.*';
      i += 1;
    } else if (char === '*') {
      source += '[^/]*';
    } else if (char === '?') {
      source += '[^/]';
    } else {
      source += char.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
  }
  cached = new RegExp(`^${source}$`, 's');
  if (compiled.size < 10_000) compiled.set(glob, cached);
  return cached;
}

/** The claim as text, or undefined when it is absent or not a scalar. */
function claimText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value === 'boolean') return String(value);
  return undefined;
}

export function claimMatches(matcher: ClaimMatcher, value: unknown): boolean {
  const text = claimText(value);
  if (text === undefined) return false;
  if (typeof matcher === 'string' || typeof matcher === 'number' || typeof matcher === 'boolean') return text === String(matcher);
  if ('oneOf' in matcher) return matcher.oneOf.some((candidate) => text === String(candidate));
  const patterns = typeof matcher.glob === 'string' ? [matcher.glob] : matcher.glob;
  return patterns.some((pattern) => globToRegExp(pattern).test(text));
}
