/**
 * The server's metrics, and a Layer that serves them to Prometheus.
 *
 * The engine keeps them in the `Metric.MetricRegistry` of the context the
 * server is built in (Effect's default registry unless the app provides
 * one), unless the `metrics` setting is off: they are read from the engine's
 * own counts when the registry is read (`Metric.value`, a scrape), and
 * `Metric.update` on them does nothing. Their names and labels follow
 * Prometheus's conventions: base units (seconds, bytes), `_total` counters,
 * and no label whose values are unbounded (no address, no user): a label is a
 * phase, a reply class or an enhanced status code.
 *
 * `layerPrometheus` serves every metric of the registry in Prometheus's text
 * format, with Effect's HTTP server and `PrometheusMetrics`.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import type { PrometheusOptions } from "../internal/PrometheusServer.ts"
import type * as HttpServer from "effect/http/HttpServer"
import type * as HttpServerError from "effect/http/HttpServerError"

/** A phase as metrics, spans and log lines name it; `command` is any other command (NOOP, RSET, an unknown one). */
export type PhaseName = "connect" | "secure" | "auth" | "mail_from" | "rcpt_to" | "data" | "close" | "command"

/** The class of a reply code. */
export type ReplyClass = "4xx" | "5xx"

export const connectionsOpened = Metric.counter("smtp_connections_opened_total", {
  description: "Connections the server took (refused ones are counted by smtp_rejections_total with phase connect)",
  incremental: true
})

export const connectionsActive = Metric.gauge("smtp_connections_active", { description: "Connections open now" })

/** TLS sessions established: by STARTTLS, or on an implicit TLS port. */
export const tlsSessions = (mode: "starttls" | "implicit"): Metric.Counter<number> => tlsCounters[mode]

const tlsCounters = {
  starttls: Metric.counter("smtp_tls_sessions_total", { description: "TLS sessions established, by mode", incremental: true, attributes: { mode: "starttls" } }),
  implicit: Metric.counter("smtp_tls_sessions_total", { description: "TLS sessions established, by mode", incremental: true, attributes: { mode: "implicit" } })
}

/** AUTH attempts that succeeded or failed. */
export const authAttempts = (result: "success" | "failure"): Metric.Counter<number> => authCounters[result]

const authCounters = {
  success: Metric.counter("smtp_auth_attempts_total", { description: "AUTH attempts by result", incremental: true, attributes: { result: "success" } }),
  failure: Metric.counter("smtp_auth_attempts_total", { description: "AUTH attempts by result", incremental: true, attributes: { result: "failure" } })
}

export const messagesAccepted = Metric.counter("smtp_messages_accepted_total", { description: "Messages answered 250", incremental: true })

export const receivedBytes = Metric.counter("smtp_received_bytes_total", {
  description: "Message bytes received in DATA, accepted or not",
  incremental: true
})

/** The buckets of `messageSize`: 1 KiB to 64 MiB, by fours. */
export const messageSizeBoundaries: ReadonlyArray<number> = Metric.exponentialBoundaries({ start: 1024, factor: 4, count: 10 })

/** The messages accepted, by size. */
export const messageSize = Metric.histogram("smtp_message_size_bytes", {
  description: "Sizes of accepted messages",
  boundaries: messageSizeBoundaries
})

/** One series per label set, made once. */
const series = <M>(make: (key: string) => M) => {
  const made = new Map<string, M>()
  return (key: string): M => {
    let metric = made.get(key)
    if (metric === undefined) made.set(key, metric = make(key))
    return metric
  }
}

const rejectionSeries = series((key) => {
  const [phase = "", replyClass = "", enhanced = ""] = key.split(" ")
  return Metric.counter("smtp_rejections_total", {
    description: "Replies 4xx and 5xx, by phase, class and enhanced status code",
    incremental: true,
    attributes: { phase, class: replyClass, enhanced }
  })
})

/** Rejections of `phase` with a reply of `replyClass` and the enhanced status code `enhanced`. */
export const rejections = (phase: PhaseName, replyClass: ReplyClass, enhanced: string): Metric.Counter<number> =>
  rejectionSeries(`${phase} ${replyClass} ${enhanced}`)

const defectSeries = series((phase) =>
  Metric.counter("smtp_defects_total", { description: "Handlers that failed with a defect (answered 451 4.3.0)", incremental: true, attributes: { phase } })
)

/** Defects in `phase`'s handlers. */
export const defects = (phase: PhaseName): Metric.Counter<number> => defectSeries(phase)

/** A policy whose shared store (Redis) could not answer. */
export type StorePolicy = "rate_limits" | "greylisting"

const storeFailureCounters = {
  rate_limits: Metric.counter("smtp_policy_store_failures_total", {
    description: "Store lookups of a policy plugin that failed or timed out (let through or answered 4xx, as the plugin is set)",
    incremental: true,
    attributes: { policy: "rate_limits" }
  }),
  greylisting: Metric.counter("smtp_policy_store_failures_total", {
    description: "Store lookups of a policy plugin that failed or timed out (let through or answered 4xx, as the plugin is set)",
    incremental: true,
    attributes: { policy: "greylisting" }
  })
}

/** Lookups of `policy`'s store (the rate limits' or the greylist's) that failed or timed out. */
export const policyStoreFailures = (policy: StorePolicy): Metric.Counter<number> => storeFailureCounters[policy]

/** The buckets of `phaseDuration`: half a millisecond to about 33 seconds, by fours. */
export const phaseDurationBoundaries: ReadonlyArray<number> = Metric.exponentialBoundaries({ start: 0.0005, factor: 4, count: 10 })

const durationSeries = series((phase) =>
  Metric.histogram("smtp_phase_duration_seconds", {
    description: "How long each run of a phase's middleware took",
    boundaries: phaseDurationBoundaries,
    attributes: { phase }
  })
)

/** How long runs of `phase`'s middleware took. */
export const phaseDuration = (phase: PhaseName): Metric.Histogram<number> => durationSeries(phase)

export type { PrometheusOptions } from "../internal/PrometheusServer.ts"

/**
 * Serves the metrics of the registry in Prometheus's text format over HTTP, on 127.0.0.1 unless `host` says
 * otherwise. Effect's HTTP server is loaded when this Layer is built, not with the package: merely loading it
 * made each idle SMTP connection of `bench/server.ts` hold about 8 KiB more (bench/RESULTS.md, run I).
 */
export const layerPrometheus = (options: PrometheusOptions): Layer.Layer<HttpServer.HttpServer, HttpServerError.ServeError> =>
  Layer.unwrap(Effect.map(Effect.promise(() => import("../internal/PrometheusServer.ts")), (server) => server.layer(options)))
