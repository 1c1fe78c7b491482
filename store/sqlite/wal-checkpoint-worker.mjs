/**
 * The WAL checkpointer thread of a SQLite store (wal-checkpointer.ts).
 *
 * Why a thread: a checkpoint copies the pages committed to the write-ahead log back into
 * the database file and fsyncs both files (https://www.sqlite.org/wal.html#ckpt). Run by
 * the store's own connection (SQLite's automatic checkpoint, every 1,000 WAL pages), all
 * of that happens inside a COMMIT on the event loop: a few milliseconds of copying, and
 * fsyncs of the database file that stall every request for as long as the disk takes
 * (up to 110 ms measured, BENCHMARKS.md). Here the same work runs on a connection of its
 * own, on this thread, while the store's connection goes on committing.
 *
 * Safety is SQLite's: a PASSIVE checkpoint takes no lock a writer needs, copies only
 * frames of committed transactions that no reader still needs, syncs the WAL before
 * copying and the database file before it records how far it got (this connection runs
 * `synchronous=FULL`, which a checkpoint obeys like NORMAL does). The writer reuses the
 * WAL from its start only after everything in it was copied and synced, and syncs the
 * new WAL header before any frame after it (its own `synchronous=NORMAL`).
 *
 * Plain JavaScript with JSDoc types, for the reason sign-worker.mjs gives: Node cannot
 * start a worker from TypeScript, and this file runs unchanged under the test runner
 * and from dist/. It imports only Node built-ins and better-sqlite3.
 *
 * Starting the WAL again: the writer reuses the WAL from its start only if, when its
 * write transaction begins, every frame in it has been copied. Under steady load the
 * writer commits while a pass copies, so that almost never happens by itself (and a
 * pass cannot tell: it reports the frames there were when it began). So after a run
 * that found new frames, this thread posts 'behind'; the store then holds its writes
 * (a turn of its queue, as for an fsync: the event loop runs on) and posts 'catch-up',
 * and this thread copies the few frames left and posts 'caught-up'.
 *
 * Messages: the main thread posts 'stop' and 'catch-up'; this thread posts 'behind' and
 * 'caught-up' (above), and 'failed' (with the SQLite error code, never a path or SQL) if
 * opening or a checkpoint fails, and then ends: the store goes back to SQLite's own
 * checkpoints.
 */
import { clearTimeout, setTimeout } from 'node:timers';
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

/**
 * @typedef {object} CheckpointWorkerData
 * @property {string} path The database file (its WAL is `<path>-wal`).
 * @property {number} intervalMs Time between checkpoint runs.
 */

/**
 * @typedef {{ readonly type: 'behind' | 'caught-up' } | { readonly type: 'failed'; readonly code: string }} CheckpointWorkerMessage
 * @typedef {'stop' | 'catch-up'} CheckpointWorkerRequest
 */

/**
 * Passes per timed run: a pass copies what was committed when it began, and the writer
 * may commit more meanwhile; a second, shorter pass leaves less for the catch-up, during
 * which the store's writes wait.
 */
const PASSES_PER_RUN = 2;

const port = parentPort;
if (port === null) throw new Error('wal-checkpoint-worker.mjs runs as a worker thread');
const { path, intervalMs } = readWorkerData(workerData);

/**
 * @param {unknown} value
 * @returns {CheckpointWorkerData}
 */
function readWorkerData(value) {
  const { path, intervalMs } = /** @type {Partial<Record<keyof CheckpointWorkerData, unknown>>} */ (value ?? {});
  if (typeof path !== 'string' || typeof intervalMs !== 'number' || !(intervalMs > 0)) {
    throw new TypeError('wal-checkpoint-worker.mjs needs a path and a positive intervalMs');
  }
  return { path, intervalMs };
}

/** @type {Database.Database | undefined} */
let db;
/** @type {NodeJS.Timeout | undefined} */
let timer;

/** @param {unknown} error */
function codeOf(error) {
  const code = /** @type {{ code?: unknown }} */ (error).code;
  return typeof code === 'string' ? code : 'UNKNOWN';
}

/** @param {unknown} error */
function fail(error) {
  post({ type: 'failed', code: codeOf(error) });
  stop();
}

function stop() {
  if (timer !== undefined) clearTimeout(timer);
  timer = undefined;
  try {
    // Not the last connection (the store's is open until this thread has ended), so
    // closing neither checkpoints nor removes the WAL.
    db?.close();
  } catch {
    // Ending anyway.
  }
  db = undefined;
  port?.close();
}

/** @param {CheckpointWorkerMessage} message */
function post(message) {
  port?.postMessage(message);
}

/**
 * Up to `passes` checkpoint passes, ending early once one copied everything it saw or
 * could not run; returns the frames in the WAL as the last pass began.
 * @param {Database.Statement} checkpoint
 * @param {number} passes
 */
function run(checkpoint, passes) {
  let frames = 0;
  for (let pass = 0; pass < passes; pass += 1) {
    // PASSIVE: never waits for, nor blocks, the writer or a reader (busy = 1 then).
    const row = /** @type {{ busy: number; log: number; checkpointed: number }} */ (checkpoint.get());
    frames = row.log;
    if (row.busy !== 0 || row.checkpointed >= row.log) break;
  }
  return frames;
}

try {
  db = new Database(path, { fileMustExist: true, timeout: 0 });
  db.pragma('synchronous = FULL');
  if (db.pragma('synchronous', { simple: true }) !== 2 || db.pragma('journal_mode', { simple: true }) !== 'wal') {
    throw Object.assign(new Error('the connection is not in WAL mode with synchronous=FULL'), { code: 'SIGNET_CHECKPOINT_SETUP' });
  }
  const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
  /** The WAL's frames after the last run: the same again means nothing was committed since. */
  let framesBefore = 0;
  const tick = () => {
    try {
      const frames = run(checkpoint, PASSES_PER_RUN);
      if (frames !== framesBefore) post({ type: 'behind' });
      framesBefore = frames;
      timer = setTimeout(tick, intervalMs);
    } catch (error) {
      fail(error);
    }
  };
  timer = setTimeout(tick, intervalMs);
  port.on('message', (/** @type {CheckpointWorkerRequest} */ message) => {
    if (message === 'stop') {
      stop();
      return;
    }
    try {
      // The store holds its writes meanwhile: one pass copies everything left.
      framesBefore = run(checkpoint, 1);
      post({ type: 'caught-up' });
    } catch (error) {
      fail(error);
    }
  });
} catch (error) {
  fail(error);
}
