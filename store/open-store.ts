/**
 * The one place that turns storage configuration into a ready `SignetStore`: it picks
 * the backend, opens it and brings its schema up to date, so the service never starts
 * on a database it cannot use. Each backend is one member of `StoreConfig`.
 */
import { openSqliteStore } from './sqlite/sqlite-store.js';
import type { SignetStore } from './store.js';

export interface SqliteStoreConfig {
  readonly driver: 'sqlite';
  readonly sqlite: {
    /** Database file; its directory must exist. */
    readonly path: string;
    /** See `SqliteStoreOptions.busyTimeoutMs`. */
    readonly busyTimeoutMs?: number;
  };
}

/** One member per backend, told apart by `driver`. */
export type StoreConfig = SqliteStoreConfig;

/** Opens and migrates. Throws StoreError (or TypeError for an invalid configuration). */
export async function openStore(config: StoreConfig): Promise<SignetStore> {
  const store = openBackend(config.driver, config);
  try {
    await store.migrate();
  } catch (error) {
    await store.close();
    throw error;
  }
  return store;
}

type Driver = StoreConfig['driver'];
type ConfigFor<D extends Driver> = Extract<StoreConfig, { driver: D }>;

/**
 * Backend openers by driver. The mapped type makes a new `StoreConfig` member without
 * its opener a compile error.
 */
const BACKENDS: { readonly [D in Driver]: (config: ConfigFor<D>) => SignetStore } = Object.freeze({
  sqlite: (config: SqliteStoreConfig) => openSqliteStore(config.sqlite),
});

function openBackend<D extends Driver>(driver: D, config: ConfigFor<D>): SignetStore {
  const open: (config: ConfigFor<D>) => SignetStore = BACKENDS[driver];
  return open(config);
}
