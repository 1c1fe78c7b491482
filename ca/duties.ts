/**
 * The CA's periodic work inside `signet serve`: keep every CRL current (a new one when
 * half of the last one's validity has passed, or when it misses a revocation), and
 * warn about certificates expiring within `ca.expiryWarningDays`: a service-log warning
 * and a `signet.certificate-expiry/v1` log entry, at most once per certificate per UTC
 * day in this process.
 *
 * With several replicas on one database, `mayRun` (service/leadership.ts) lets one
 * replica at a time run the rounds. Should two ever overlap (a lease that expired
 * under a stalled holder), CRL numbers only grow (storage refuses a duplicate), so they
 * sign at most one extra CRL, and an expiry warning may appear twice that day.
 */
import type { LogEntryInput } from '../store/store.js';
import type { CertificateAuthority } from './authority.js';
import { listExpiringCertificates, type ExpiringCertificate } from './expiry.js';
import { CERTIFICATE_EXPIRY_KIND, certificateExpiryLeaf } from './log-entries.js';

export interface CaDutiesLogger {
  info(object: object, message: string): void;
  warn(object: object, message: string): void;
}

export interface CaDutiesOptions {
  readonly ca: CertificateAuthority;
  /** Appends durably to the transparency log (TransparencyLog.append). */
  readonly appendToLog: (entries: readonly LogEntryInput[]) => Promise<unknown>;
  readonly logger: CaDutiesLogger;
  readonly now?: () => Date;
  /** Default: hourly. CRLs last days; this only has to be well inside half of that. */
  readonly intervalMs?: number;
  /** Asked before each round; the round runs only if it resolves true (once-per-cluster leadership). Default: always. */
  readonly mayRun?: () => Promise<boolean>;
}

export interface CaDuties {
  /** One round now (also run at start); resolves when done, never rejects. */
  runOnce(): Promise<void>;
  /** No more rounds; resolves once a round in progress has finished. */
  stop(): Promise<void>;
}

export function startCaDuties(options: CaDutiesOptions): CaDuties {
  const now = options.now ?? (() => new Date());
  const warned = new Set<string>();
  let running: Promise<void> | undefined;

  const warn = async (expiring: readonly ExpiringCertificate[], at: Date): Promise<void> => {
    const day = at.toISOString().slice(0, 10);
    const fresh = expiring.filter((c) => !warned.has(`${c.serialNumber}:${day}`));
    if (fresh.length === 0) return;
    const windowDays = options.ca.settings.expiryWarningDays;
    const time = at.toISOString();
    await options.appendToLog(
      fresh.map((certificate) => ({
        kind: CERTIFICATE_EXPIRY_KIND,
        leaf: certificateExpiryLeaf({ certificate, windowDays, time }),
        integratedTime: Math.floor(at.getTime() / 1000),
        linkedIndex: null,
      })),
    );
    for (const certificate of fresh) {
      warned.add(`${certificate.serialNumber}:${day}`);
      options.logger.warn({ certificate }, certificate.expired ? 'certificate expired' : 'certificate expires soon');
    }
  };

  const round = async (): Promise<void> => {
    // Not this replica's turn, or leadership unknown (the database is away): no round.
    const leading = options.mayRun === undefined || (await options.mayRun().catch(() => false));
    if (!leading) return;
    try {
      const signed = await options.ca.refreshCrls();
      for (const crl of signed) options.logger.info({ caId: crl.issuerCaId, crlNumber: crl.crlNumber, nextUpdate: crl.nextUpdate }, 'CRL signed');
    } catch (error) {
      options.logger.warn({ err: error }, 'CRL refresh failed; will retry');
    }
    try {
      const at = now();
      const expiring = await listExpiringCertificates(options.ca.store, { now: at, windowDays: options.ca.settings.expiryWarningDays });
      await warn(expiring, at);
    } catch (error) {
      options.logger.warn({ err: error }, 'certificate expiry check failed; will retry');
    }
  };

  const runOnce = (): Promise<void> => {
    running ??= round().finally(() => {
      running = undefined;
    });
    return running;
  };

  void runOnce();
  const timer = setInterval(() => void runOnce(), options.intervalMs ?? 3_600_000);
  timer.unref();
  return {
    runOnce,
    stop: async () => {
      clearInterval(timer);
      await running;
    },
  };
}
