/**
 * What the `effect-smtp` command shows operators, from its settings: log
 * lines in the format and from the level asked for; the metrics served to
 * Prometheus on the port asked for; and, where the standard
 * `OTEL_EXPORTER_OTLP_ENDPOINT` is set, traces, metrics and logs exported over
 * OTLP (HTTP, JSON) under `OTEL_SERVICE_NAME`. Effect's HTTP stack is loaded
 * only for these: loading it makes every SMTP connection hold more memory.
 */
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import type * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as References from "effect/References"
import type * as Scope from "effect/Scope"
import type * as OtlpExporter from "effect/observability/OtlpExporter"
import type * as SettingsReader from "../internal/SettingsReader.ts"
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

/** The OTLP settings' documentation: OpenTelemetry's standard variables. */
export const otlpDocumentation: ReadonlyArray<SettingsReader.Row> = [
  {
    setting: "otlpEndpoint",
    variable: "OTEL_EXPORTER_OTLP_ENDPOINT",
    default: "none",
    meaning: "export traces, metrics and logs over OTLP (HTTP, JSON) to this collector, as `http://127.0.0.1:4318` (none: no export)"
  },
  { setting: "otlpServiceName", variable: "OTEL_SERVICE_NAME", default: "effect-smtp", meaning: "the service name the exported telemetry carries" }
]

export const otlpSettings: Config.Config<OtlpSettings> = Config.all({
  endpoint: Config.option(Config.String("OTEL_EXPORTER_OTLP_ENDPOINT")),
  serviceName: Config.String("OTEL_SERVICE_NAME").pipe(Config.withDefault("effect-smtp"))
})

/** OTLP export of traces, metrics and logs, with an endpoint; built where the logging is set, so its logger joins. */
export const exporting = (otlp: OtlpSettings): Layer.Layer<OtlpExporter.Flusher> | Layer.Layer<never> =>
  Option.match(otlp.endpoint, {
    onNone: () => Layer.empty,
    // Its tracer and logger are references of the context it builds: the server built there exports through them.
    onSome: (endpoint) =>
      Layer.unwrap(
        Effect.promise(() => Promise.all([import("effect/observability/Otlp"), import("effect/http/FetchHttpClient")])).pipe(
          Effect.map(([Otlp, FetchHttpClient]) =>
            Otlp.layerJson({ baseUrl: endpoint.replace(/\/+$/, ""), resource: { serviceName: otlp.serviceName } }).pipe(
              Layer.provide(FetchHttpClient.layer)
            )
          )
        )
      )
  })

/** Serves the metrics for the scope on `port` (if any) and `host`: the URL they are at, or a message naming what failed. */
export const serveMetrics = (port: Option.Option<number>, host: string): Effect.Effect<Option.Option<string>, string, Scope.Scope> =>
  Option.match(port, {
    onNone: () => Effect.succeedNone,
    onSome: (port) =>
      Effect.all([Layer.build(SmtpMetrics.layerPrometheus({ port, host })), Effect.promise(() => import("effect/http/HttpServer"))]).pipe(
        Effect.map(([context, HttpServer]) => Option.some(`${HttpServer.formatAddress(Context.get(context, HttpServer.HttpServer).address)}/metrics`)),
        Effect.mapError((error) => `cannot serve metrics on ${host}:${port}: ${describe(error.cause)}`)
      )
  })

const describe = (cause: unknown): string =>
  typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string" ? cause.code : String(cause)
