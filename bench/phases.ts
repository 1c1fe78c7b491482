/**
 * The record of `npm run bench -- --profile DIR`: bench/main.ts writes it to
 * DIR/phases.json and bench/profile-phases.ts reads it, to read each service's V8 CPU
 * profile over one kind of measured phase alone.
 */

/** The file in the profile directory. */
export const PHASES_FILE = 'phases.json';

/** One measured phase of one service. */
export interface ProfiledPhase {
  /** The service's log variant (`on`, `off`, `promises`): the `--log` it was started with. */
  readonly service: string;
  readonly phase: 'closed loop' | 'common rate';
  /** When it began and ended, on the monotonic clock V8's CPU profiles use. */
  readonly startMicroseconds: number;
  readonly endMicroseconds: number;
  /** Requests answered in it. */
  readonly requests: number;
}
