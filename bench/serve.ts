/**
 * The service as the end-to-end benchmark runs it, in a process of its own:
 *
 *   node dist/bench/serve.js --config F --port P [--database D] [--pool-size N] [--log on|off|promises]
 *
 * `startService` is called exactly as `signet serve` calls it, on another port and
 * database file (without --database, on the storage the config names, e.g. PostgreSQL,
 * with --pool-size connections), so that several services can be measured in turn
 * within one run.
 * `--log off` swaps the transparency log for UnloggedForBenchmark, the baseline that
 * shows what the log costs; `--log promises` wraps it in PromisingForBenchmark, which
 * adds an inclusion promise to every answer. These options exist only here: the
 * service itself has no way to run without its log.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.js';
import type { SignetConfig } from '../config/schema.js';
import { startService, type StartOptions } from '../service/wiring.js';
import { PromisingForBenchmark } from './promising-log.js';
import { UnloggedForBenchmark } from './unlogged-log.js';

const { values } = parseArgs({
  options: {
    config: { type: 'string' },
    port: { type: 'string' },
    database: { type: 'string' },
    'pool-size': { type: 'string' },
    log: { type: 'string', default: 'on' },
  },
});
const variants: Readonly<Record<string, StartOptions>> = {
  on: {},
  off: { replaceLogForBenchmark: (log, store) => new UnloggedForBenchmark(log, store) },
  promises: { replaceLogForBenchmark: (log, store) => new PromisingForBenchmark(log, store) },
};
const options = Object.hasOwn(variants, values.log) ? variants[values.log] : undefined;
if (values.config === undefined || values.port === undefined || options === undefined) {
  process.stderr.write('usage: serve.js --config F --port P [--database D] [--pool-size N] [--log on|off|promises]\n');
  process.exit(64);
}

const loaded = loadConfig(values.config);
const poolSize = values['pool-size'] === undefined ? undefined : Number(values['pool-size']);
const storage: SignetConfig['storage'] =
  values.database !== undefined
    ? { driver: 'sqlite', sqlite: { path: values.database } }
    : loaded.storage.driver === 'postgres' && poolSize !== undefined
      ? { ...loaded.storage, postgres: { ...loaded.storage.postgres, poolSize } }
      : loaded.storage;
const config = { ...loaded, server: { ...loaded.server, port: Number(values.port) }, storage };
const service = await startService(config, options);
process.once('SIGTERM', () => {
  service.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
