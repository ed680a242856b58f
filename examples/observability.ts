/**
 * The README's observability: an embedded server's metrics served to
 * Prometheus, and its traces exported over OTLP, run by
 * `examples/observability.test.ts`.
 */
import { Layer } from "effect"
import { FetchHttpClient } from "effect/http"
import { OtlpSerialization, OtlpTracer } from "effect/observability"
import { SmtpMetrics } from "effect-smtp"

/** Prometheus scrapes `http://127.0.0.1:<metricsPort>/metrics`; spans go to the collector at `otlpUrl`. */
export const observability = (options: { readonly metricsPort: number; readonly otlpUrl: string }) =>
  Layer.mergeAll(
    SmtpMetrics.layerPrometheus({ port: options.metricsPort }),
    OtlpTracer.layer({ url: `${options.otlpUrl}/v1/traces`, resource: { serviceName: "mx" } }).pipe(
      Layer.provide([OtlpSerialization.layerJson, FetchHttpClient.layer])
    )
  )
