/**
 * The `metrics:` section of `signet.yaml`: where the Prometheus text exposition
 * (server/metrics.ts) is served. Every value has a default, so a configuration without
 * the section is valid.
 *
 * Two places, either or both:
 * - `GET /metrics` on the main HTTPS listener (`onMainListener`, default true), without
 *   a client certificate, like `/readyz`. Scrapers verify the service's TLS certificate
 *   with its CA, as any client does.
 * - a separate plain-HTTP listener (`listen`) that serves `GET /metrics` and nothing
 *   else, for deployments that keep metrics off the public address: bind it to
 *   loopback or to a monitoring network (SECURITY.md, "Metrics").
 */
import { z } from 'zod';

export const metricsSchema = z
  .object({
    /** Serve `GET /metrics` on the main HTTPS listener (no client certificate needed). */
    onMainListener: z.boolean().default(true),
    /** A separate plain-HTTP listener for `GET /metrics` only, e.g. `{ host: 127.0.0.1, port: 9464 }`. */
    listen: z
      .object({
        host: z.string().min(1).default('127.0.0.1'),
        port: z.number().int().min(0).max(65535),
      })
      .strict()
      .optional(),
    /** Node.js process metrics (CPU, memory, event-loop lag, GC) beside Signet's own. */
    processMetrics: z.boolean().default(true),
  })
  .strict()
  .default({ onMainListener: true, processMetrics: true });

export type MetricsConfig = z.output<typeof metricsSchema>;
