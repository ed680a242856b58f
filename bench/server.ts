/**
 * The benchmark's effect-smtp server, built only with the public API: three
 * pass-through middleware on each of connect, mail from, rcpt to and data
 * (one reads per-session state from a Ref-backed service, one annotates
 * logs); data drains the stream and accepts; nothing is stored; logs at
 * warning level. Usage: node bench/server.ts PORT
 */
import { NodeRuntime } from "@effect/platform-node"
import { Cause, Console, Context, Effect, Exit, Layer, Ref, References, Stream } from "effect"
import { Message, SmtpApp, SmtpServer, SmtpServerConfig } from "effect-smtp"

class Commands extends Context.Service<Commands, Ref.Ref<number>>()("bench/Commands") {
  static readonly layer = Layer.effect(Commands, Ref.make(0))
}

const counting = <E, R>(next: Effect.Effect<void, E, R>) =>
  Effect.andThen(Commands.use((ref) => Ref.update(ref, (n) => n + 1)), next)
const annotated = <E, R>(next: Effect.Effect<void, E, R>) => Effect.annotateLogs(next, "bench", "yes")
const passThrough = <E, R>(next: Effect.Effect<void, E, R>) => next

const app = SmtpApp.empty.pipe(
  SmtpApp.withConnectionState(Commands.layer),
  SmtpApp.onConnect(counting),
  SmtpApp.onConnect(annotated),
  SmtpApp.onConnect(passThrough),
  SmtpApp.onMailFrom(counting),
  SmtpApp.onMailFrom(annotated),
  SmtpApp.onMailFrom(passThrough),
  SmtpApp.onRcptTo(counting),
  SmtpApp.onRcptTo(annotated),
  SmtpApp.onRcptTo(passThrough),
  SmtpApp.onData(counting),
  SmtpApp.onData(annotated),
  SmtpApp.onData(passThrough),
  SmtpApp.onData(() => Message.use((message) => Stream.runDrain(message.stream)))
)

const port = Number(process.argv[2] ?? "0")

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
      shutdownTimeout: "2 seconds"
    })),
    Layer.provide(Layer.succeed(References.MinimumLogLevel, "Warn"))
  )),
  // SIGTERM is how the benchmark stops the server: that is a clean exit, not an interruption.
  (program) => NodeRuntime.runMain(program, {
    teardown: (exit, onExit) => onExit(Exit.isSuccess(exit) || Cause.hasInterruptsOnly(exit.cause) ? 0 : 1)
  })
)
