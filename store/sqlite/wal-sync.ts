/**
 * Makes committed SQLite writes durable without blocking the event loop.
 *
 * The read-write connection runs WAL with `synchronous=NORMAL`: COMMIT appends to the
 * write-ahead log without an fsync. The store then calls `sync()`, which fsyncs the WAL
 * file on libuv's thread pool, and settles nobody's call, nor lets any other call run
 * (not even a read), until it has returned. That is the guarantee of
 * `synchronous=FULL`, which fsyncs the WAL at every commit: with NORMAL, SQLite itself
 * still syncs the WAL before each checkpoint, the database after it, and the WAL header
 * when the file is reused (https://www.sqlite.org/pragma.html#pragma_synchronous; the
 * checkpoints run on a connection of their own, wal-checkpointer.ts, whose
 * `synchronous=FULL` makes the same syncs). What
 * changes is where the wait happens: FULL blocks the event loop for every fsync, here
 * TLS, token checks and HSM answers go on meanwhile.
 *
 * A failed fsync is final. The kernel may already have dropped the pages it could not
 * write, and a later fsync would then succeed without them, so committed writes may be
 * lost without anyone being told; the store refuses every call after it (fail closed)
 * until the process is restarted and SQLite recovers from what is on disk.
 */
import { closeSync, constants as fsConstants, fstatSync, fsync, openSync, statSync } from 'node:fs';
import { StoreError } from '../errors.js';

export class WalSync {
  readonly #walPath: string;
  #fd: number | undefined;
  #inode: number | undefined;
  #failure: StoreError | undefined;

  /** `databasePath`: the database file; its WAL is `<path>-wal`. */
  constructor(databasePath: string) {
    this.#walPath = `${databasePath}-wal`;
  }

  /** The failure that ended durability, if one did. */
  failure(): StoreError | undefined {
    return this.#failure;
  }

  /** Returns once everything committed so far is on stable storage; throws STORE_UNAVAILABLE, for good, if it cannot be. */
  async sync(): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure;
    try {
      const fd = this.#descriptor();
      await new Promise<void>((resolve, reject) => {
        fsync(fd, (error) => {
          if (error === null) resolve();
          else reject(error);
        });
      });
    } catch (error) {
      this.#failure ??= new StoreError(
        'STORE_UNAVAILABLE',
        'the write-ahead log could not be made durable (fsync failed); committed writes may be lost, so storage refuses everything until the service restarts',
        { cause: error },
      );
      throw this.#failure;
    }
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
    this.#inode = undefined;
  }

  /**
   * A descriptor of the WAL file as it is now. SQLite keeps the file while a connection
   * is open (it truncates it in place), but should it ever be replaced, the descriptor
   * follows it. Read-only is enough: fsync(2) flushes the file, whoever wrote it.
   */
  #descriptor(): number {
    const inode = statSync(this.#walPath).ino;
    if (this.#fd !== undefined && this.#inode === inode) return this.#fd;
    this.close();
    const fd = openSync(this.#walPath, fsConstants.O_RDONLY);
    this.#fd = fd;
    this.#inode = fstatSync(fd).ino;
    return fd;
  }
}
