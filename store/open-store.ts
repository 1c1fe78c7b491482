/**
 * The one place that turns storage configuration into a ready `SignetStore`: it picks
 * the backend, opens it and brings its schema up to date, so the service never starts
 * on a database it cannot use. Each backend is one member of `StoreConfig`, and its
 * driver is loaded only when chosen (a PostgreSQL deployment never loads SQLite's
 * native module, nor a SQLite one pg).
 */
import { readSecret } from '../config/load.js';
import type { SecretSource } from '../config/schema.js';
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

export interface PostgresStoreConfig {
  readonly driver: 'postgres';
  readonly postgres: {
    /**
     * The connection URL, or the environment variable or file that holds it: a URL can
     * carry a password, so configuration files name where it is, as for the HSM PIN.
     */
    readonly url: string | SecretSource;
    /** See `PostgresStoreOptions` (store/postgres/postgres-store.ts) for these. */
    readonly schema?: string | undefined;
    readonly poolSize?: number | undefined;
    readonly statementTimeoutMs?: number | undefined;
    readonly connectTimeoutMs?: number | undefined;
  };
}

/** One member per backend, told apart by `driver`. */
export type StoreConfig = SqliteStoreConfig | PostgresStoreConfig;

/** Opens and migrates. Throws StoreError (or TypeError for an invalid configuration, ConfigError for a missing URL secret). */
export async function openStore(config: StoreConfig): Promise<SignetStore> {
  const store = await openBackend(config.driver, config);
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
const BACKENDS: { readonly [D in Driver]: (config: ConfigFor<D>) => Promise<SignetStore> } = Object.freeze({
  sqlite: async (config: SqliteStoreConfig) => (await import('./sqlite/sqlite-store.js')).openSqliteStore(config.sqlite),
  postgres: async (config: PostgresStoreConfig) => {
    const { url, ...options } = config.postgres;
    const resolved = typeof url === 'string' ? url : readSecret(url, 'storage.postgres.url');
    return (await import('./postgres/postgres-store.js')).openPostgresStore({ ...options, url: resolved });
  },
});

function openBackend<D extends Driver>(driver: D, config: ConfigFor<D>): Promise<SignetStore> {
  const open: (config: ConfigFor<D>) => Promise<SignetStore> = BACKENDS[driver];
  return open(config);
}
