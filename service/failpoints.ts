/**
 * Failpoints: named places in the code where a crash test makes `signet serve` die, so
 * that what a crash leaves behind can be tested deterministically rather than by killing
 * the process at random moments (the idea of etcd's gofail and FreeBSD's fail points).
 *
 * `SIGNET_FAILPOINTS=rotation.after-generate` (names separated by commas) arms them at
 * start; reaching an armed point sends SIGKILL to the process itself, so nothing after it
 * runs, no handler, no `finally`, no flush: like a power cut. Without the variable (or
 * with it empty) nothing is armed and every point is a no-op. Test use only: it is read
 * from the environment, not the config, and an unknown name stops the service at start
 * rather than arming nothing.
 */
import { ConfigError } from '../config/errors.js';

export const FAILPOINTS_VARIABLE = 'SIGNET_FAILPOINTS';

/**
 * The failpoint function for the names `known`, or undefined when none is armed. Throws
 * CONFIG_INVALID for a name that is not among `known`.
 */
export function failpointsFromEnvironment<Name extends string>(
  known: readonly Name[],
  environment: NodeJS.ProcessEnv = process.env,
): { readonly armed: readonly Name[]; readonly hit: (name: Name) => void } | undefined {
  const names = (environment[FAILPOINTS_VARIABLE] ?? '')
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '');
  if (names.length === 0) return undefined;
  const unknown = names.filter((name) => !(known as readonly string[]).includes(name));
  if (unknown.length > 0) {
    throw new ConfigError('CONFIG_INVALID', `${FAILPOINTS_VARIABLE} names unknown failpoints`, [
      `${unknown.join(', ')}: not one of ${known.join(', ')}`,
    ]);
  }
  const armed = new Set(names);
  return {
    armed: known.filter((name) => armed.has(name)),
    hit: (name) => {
      if (armed.has(name)) process.kill(process.pid, 'SIGKILL');
    },
  };
}
