/**
 * The soak test's server: effect-smtp with its default protections, storing
 * only the id of each message. On SIGTERM it writes the `X-Soak-Id` of every stored message to
 * REPORT as a JSON array, so the soak can check each 250 was delivered exactly once.
 * Usage: node bench/soak-server.ts PORT REPORT
 */
import { writeFileSync } from "node:fs"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as References from "effect/References"
import * as Stream from "effect/Stream"
import { deliver, MessageStore, SmtpApp, SmtpServer, SmtpServerConfig } from "../src/index.ts"

/** Remembers only the `X-Soak-Id` of each stored message, so memory measures the server, not the store. */
class StoredIds extends Context.Service<StoredIds, Ref.Ref<ReadonlyArray<string>>>()("soak/StoredIds") {}

const idStore = Layer.effect(
  MessageStore,
  StoredIds.use((ids) => Effect.succeed(
    MessageStore.of({
      store: (_delivery, body) =>
        Stream.mkUint8Array(body).pipe(
          Effect.map((bytes) => /X-Soak-Id: (\S+)/.exec(Buffer.from(bytes).toString("latin1"))?.[1] ?? "?"),
          Effect.tap((id) => Ref.update(ids, (all) => [...all, id]))
        )
    })))
).pipe(Layer.provideMerge(Layer.effect(StoredIds, Ref.make<ReadonlyArray<string>>([]))))

const report = process.argv[3] ?? "soak-stored.json"

const server = SmtpServer.layer(SmtpApp.empty.pipe(deliver)).pipe(
  Layer.provideMerge(idStore),
  Layer.provide(SmtpServerConfig.layer({
    host: "127.0.0.1",
    port: Number(process.argv[2] ?? "0"),
    maxClients: 1000,
    maxConnectionsPerClient: 1000,
    idleTimeout: "10 seconds"
  })),
  Layer.provide(Layer.succeed(References.MinimumLogLevel, "Warn"))
)

Effect.gen(function*() {
  const context = yield* Layer.build(server)
  yield* Console.log(`listening ${Context.get(context, SmtpServer).address.port}`)
  yield* Effect.addFinalizer(() =>
    // Written synchronously: stdout to a pipe is asynchronous and the process exits right after.
    Effect.flatMap(Ref.get(Context.get(context, StoredIds)), (ids) => Effect.sync(() => writeFileSync(report, JSON.stringify(ids))))
  )
  return yield* Effect.never
}).pipe(
  Effect.scoped,
  (program) =>
    NodeRuntime.runMain(program, {
      teardown: (exit, onExit) => onExit(Exit.isSuccess(exit) || Cause.hasInterruptsOnly(exit.cause) ? 0 : 1)
    })
)
