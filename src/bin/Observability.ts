/**
 * What the `effect-smtp` command shows operators, from its settings: log
 * lines in the format and from the level asked for; the metrics served to
 * Prometheus on the port asked for; and, where the standard
 * `OTEL_EXPORTER_OTLP_ENDPOINT` is set, traces, metrics and logs exported over
 * OTLP (HTTP, JSON) under `OTEL_SERVICE_NAME`.
 */
import * as Config from "effect/Config"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import type * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as References from "effect/References"
import * as FetchHttpClient from "effect/http/FetchHttpClient"
import type * as HttpServerError from "effect/http/HttpServerError"
import * as Otlp from "effect/observability/Otlp"
import * as SmtpMetrics from "../layers/SmtpMetrics.ts"

/** The formats of log lines. */
export const logFormats = ["logfmt", "json", "pretty"] as const

/** The levels, as the variable takes them. */
export const logLevels = ["all", "trace", "debug", "info", "warn", "error", "fatal", "none"] as const

const loggers = {
  logfmt: Logger.consoleLogFmt,
  json: Logger.consoleJson,
  pretty: Logger.consolePretty()
} satisfies Record<(typeof logFormats)[number], Logger.Logger<unknown, void>>

const levels = {
  all: "All",
  trace: "Trace",
  debug: "Debug",
  info: "Info",
  warn: "Warn",
  error: "Error",
  fatal: "Fatal",
  none: "None"
} as const satisfies Record<(typeof logLevels)[number], LogLevel.LogLevel>

/** Log lines in `format`, from `level` up. */
export const logging = (format: (typeof logFormats)[number], level: (typeof logLevels)[number]): Layer.Layer<never> =>
  Layer.mergeAll(Logger.layer([loggers[format]]), Layer.succeed(References.MinimumLogLevel, levels[level]))

/** Where to export over OTLP: the standard variables of OpenTelemetry's exporters. */
export interface OtlpSettings {
  readonly endpoint: Option.Option<string>
  readonly serviceName: string
}

export const otlpSettings: Config.Config<OtlpSettings> = Config.all({
  endpoint: Config.option(Config.String("OTEL_EXPORTER_OTLP_ENDPOINT")),
  serviceName: Config.String("OTEL_SERVICE_NAME").pipe(Config.withDefault("effect-smtp"))
})

/** OTLP export (with an endpoint) and the Prometheus endpoint (with a port); built where the logging is set. */
export const exporters = (
  otlp: OtlpSettings,
  metricsPort: Option.Option<number>,
  metricsHost: string
): Layer.Layer<never, HttpServerError.ServeError> => {
  const exporting: Layer.Layer<never> = Option.match(otlp.endpoint, {
    onNone: () => Layer.empty,
    onSome: (endpoint) =>
      Layer.effectDiscard(Layer.build(
        Otlp.layerJson({ baseUrl: endpoint.replace(/\/+$/, ""), resource: { serviceName: otlp.serviceName } }).pipe(
          Layer.provide(FetchHttpClient.layer)
        )
      ))
  })
  const serving: Layer.Layer<never, HttpServerError.ServeError> = Option.match(metricsPort, {
    onNone: () => Layer.empty,
    onSome: (port) => Layer.effectDiscard(Layer.build(SmtpMetrics.layerPrometheus({ port, host: metricsHost })))
  })
  return Layer.merge(exporting, serving)
}
