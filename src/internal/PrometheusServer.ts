/**
 * The Prometheus endpoint of `SmtpMetrics.layerPrometheus`: Effect's HTTP
 * server with `PrometheusMetrics`, in a module of its own so that the package
 * loads Effect's HTTP stack only when the endpoint is served.
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Layer from "effect/Layer"
import * as HttpRouter from "effect/http/HttpRouter"
import type * as HttpServer from "effect/http/HttpServer"
import type * as HttpServerError from "effect/http/HttpServerError"
import * as PrometheusMetrics from "effect/observability/PrometheusMetrics"
import { createServer } from "node:http"

/** Where the endpoint listens. */
export interface PrometheusOptions {
  readonly port: number
  /** `127.0.0.1` unless given. */
  readonly host?: string
  /** `/metrics` unless given. */
  readonly path?: `/${string}`
}

/** `/metrics` (or `path`) on `host` (127.0.0.1 unless given) and `port`, without a log line per request. */
export const layer = (options: PrometheusOptions): Layer.Layer<HttpServer.HttpServer, HttpServerError.ServeError> =>
  HttpRouter.serve(PrometheusMetrics.layerHttp({ path: options.path ?? "/metrics" }), { disableLogger: true, disableListenLog: true }).pipe(
    Layer.provideMerge(NodeHttpServer.layer(createServer, { port: options.port, host: options.host ?? "127.0.0.1" }))
  )
