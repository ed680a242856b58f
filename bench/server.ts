/**
 * The benchmark's effect-smtp server, built only with the public API: three
 * pass-through middleware on each of connect, mail from, rcpt to and data
 * (one reads per-session state from a Ref-backed service, one annotates
 * logs); data drains the stream and accepts; nothing is stored; logs at
 * warning level; metrics on unless `--no-metrics`. Usage: node bench/server.ts PORT [--no-metrics]
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as References from "effect/References"
import { SmtpServer, SmtpServerConfig } from "../src/index.ts"
import { app } from "./app.ts"

const port = Number(process.argv[2] ?? "0")
const metrics = process.argv[3] !== "--no-metrics"

const main = Effect.gen(function*() {
  const server = yield* SmtpServer
  yield* Console.log(`listening ${server.address.port}`)
  return yield* Effect.never
})

main.pipe(
  Effect.provide(SmtpServer.layer(app).pipe(
    Layer.provide(SmtpServerConfig.layer({
      host: "127.0.0.1",
      port,
      maxMessageSize: 200 * 1024 * 1024,
      maxClients: 5000,
      // all the load comes from 127.0.0.1
      maxConnectionsPerClient: 5000,
      shutdownTimeout: "2 seconds",
      metrics
    })),
    Layer.provide(Layer.succeed(References.MinimumLogLevel, "Warn"))
  )),
  // SIGTERM is how the benchmark stops the server: that is a clean exit, not an interruption.
  (program) => NodeRuntime.runMain(program, {
    teardown: (exit, onExit) => onExit(Exit.isSuccess(exit) || Cause.hasInterruptsOnly(exit.cause) ? 0 : 1)
  })
)
