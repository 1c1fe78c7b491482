/**
 * `signet serve --config F`: validates the config, starts the service, and stops it
 * gracefully on SIGTERM/SIGINT. SIGHUP reloads the policy file; an invalid file is
 * refused and the policy in force stays.
 */
import { loadConfig } from '../config/load.js';
import { startService, type RunningService } from '../service/wiring.js';

export async function runServe(configPath: string): Promise<RunningService> {
  const config = loadConfig(configPath);
  const service = await startService(config);
  const stop = (signal: string): void => {
    service.logger.info({ signal }, 'signal received');
    service.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        service.logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => { stop('SIGTERM'); });
  process.once('SIGINT', () => { stop('SIGINT'); });
  process.on('SIGHUP', () => {
    service.reloadPolicy().catch((error: unknown) => {
      service.logger.error({ err: error }, 'policy reload refused; the previous policy stays in force');
    });
  });
  return service;
}
