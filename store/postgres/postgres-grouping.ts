/**
 * Group commit for the PostgreSQL store's hot writes, as the SQLite backend has one.
 *
 * Log appends all take one lock, and the consumes of a busy project all update the
 * same counter rows; either way each write holds its lock until its COMMIT has been
 * flushed to the WAL, so one transaction per call would cap every replica together at
 * the rate of WAL flushes. Plain calls of one kind made while a group is being written
 * therefore queue up and are written next, together: one transaction, one lock, one
 * flush. Each call still gets its own outcome, computed in call order as if the calls
 * had run one after another; a call refused on its own (a TypeError, a limit reached)
 * does not affect the others.
 *
 * If the database refuses the whole group (a conflicting or damaged row), the group was
 * rolled back and each call runs again alone, so that only the one concerned fails.
 * Any other failure (the connection lost, perhaps while committing) fails every call
 * of the group: running them again could write twice what was in fact committed.
 */
import { isStoreError } from '../errors.js';
import type { PgRunner, PgSession } from './postgres-session.js';

/** What the store provides for grouped calls. */
export interface CallGrouping {
  /** Throws when no call may be made now: a closed store (STORE_UNAVAILABLE), inside a transaction (TypeError). */
  admit(what: string): void;
  /** Runs one group as a plain call, even if the store was closed after its calls were admitted. */
  readonly run: PgRunner;
  /** Keeps close() waiting until `promise` settles. */
  hold<T>(promise: Promise<T>): Promise<T>;
}

export type CallOutcome<Output> = { readonly ok: true; readonly value: Output } | { readonly ok: false; readonly error: unknown };

export interface CallGroupOptions<Input, Output> {
  readonly grouping: CallGrouping;
  /** For messages: what a group of these inputs does. */
  readonly describe: (inputs: readonly Input[]) => string;
  /** A group holds calls of at most this total weight (and always at least one call). */
  readonly maxWeight: number;
  readonly weigh: (input: Input) => number;
  /** Writes the calls in one atomic unit; one outcome per input, in order. */
  readonly write: (db: PgSession, inputs: readonly Input[]) => Promise<CallOutcome<Output>[]>;
}

interface Queued<Input, Output> {
  readonly input: Input;
  readonly resolve: (value: Output) => void;
  readonly reject: (error: unknown) => void;
}

export class CallGroup<Input, Output> {
  readonly #options: CallGroupOptions<Input, Output>;
  #queue: Queued<Input, Output>[] = [];
  #flushing = false;

  constructor(options: CallGroupOptions<Input, Output>) {
    this.#options = options;
  }

  /** Admits the call, validates its input (`prepare` throws a TypeError for a bad one), and queues it. */
  submit(what: string, prepare: () => Input): Promise<Output> {
    const { grouping } = this.#options;
    let input: Input;
    try {
      grouping.admit(what);
      input = prepare();
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new TypeError('invalid call'));
    }
    const settled = new Promise<Output>((resolve, reject) => {
      this.#queue.push({ input, resolve, reject });
    });
    if (!this.#flushing) {
      this.#flushing = true;
      void this.#flush();
    }
    return grouping.hold(settled);
  }

  /** Writes the queued calls, in call order, a group at a time, until none is left. */
  async #flush(): Promise<void> {
    // Calls made in this same turn join the first group.
    await Promise.resolve();
    while (this.#queue.length > 0) {
      const group = this.#take();
      try {
        const outcomes = await this.#write(group.map((call) => call.input));
        group.forEach((call, position) => {
          settle(call, outcomes[position]);
        });
      } catch (error) {
        const refused = isStoreError(error) && (error.code === 'STORE_CONFLICT' || error.code === 'STORE_CORRUPT');
        if (!refused || group.length === 1) {
          for (const call of group) call.reject(error);
          continue;
        }
        for (const call of group) {
          try {
            settle(call, (await this.#write([call.input]))[0]);
          } catch (alone) {
            call.reject(alone);
          }
        }
      }
    }
    this.#flushing = false;
  }

  #write(inputs: readonly Input[]): Promise<CallOutcome<Output>[]> {
    const { grouping, describe, write } = this.#options;
    return grouping.run(describe(inputs), (db) => write(db, inputs));
  }

  /** The oldest queued calls, within the weight limit. */
  #take(): Queued<Input, Output>[] {
    const { maxWeight, weigh } = this.#options;
    let weight = 0;
    let taken = 0;
    for (const call of this.#queue) {
      const next = weigh(call.input);
      if (taken > 0 && weight + next > maxWeight) break;
      weight += next;
      taken += 1;
    }
    return this.#queue.splice(0, taken);
  }
}

function settle<Input, Output>(call: Queued<Input, Output>, outcome: CallOutcome<Output> | undefined): void {
  if (outcome === undefined) call.reject(new TypeError('a grouped write returned no outcome for a call'));
  else if (outcome.ok) call.resolve(outcome.value);
  else call.reject(outcome.error);
}

/** Runs a single call through a group writer outside any group (inside a transaction). */
export async function writeAlone<Input, Output>(
  db: PgSession,
  input: Input,
  write: (db: PgSession, inputs: readonly Input[]) => Promise<CallOutcome<Output>[]>,
): Promise<Output> {
  const [outcome] = await write(db, [input]);
  if (outcome === undefined) throw new TypeError('a grouped write returned no outcome for a call');
  if (!outcome.ok) throw outcome.error;
  return outcome.value;
}
