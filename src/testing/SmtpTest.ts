/**
 * An SMTP server for tests that listens nowhere.
 *
 * `SmtpTest.layer(app, options)` runs `app` exactly as `SmtpServer.layer`
 * does (smtp-server and the same adapter, with the app's services taken from
 * the Layer's context, so mock layers replace them), but no port is opened:
 * `SmtpTest.connect()` hands smtp-server one end of an in-memory connection
 * and returns a client on the other. Phase timeouts run on Effect's `Clock`,
 * and so does the idle timer of the in-memory socket: under `it.effect` both
 * fire on `TestClock.adjust`. The server records what the app saw of each
 * connection (its final `SmtpSession` state, its transactions and its
 * transcript: the kit turns the `transcript` setting on unless told not to),
 * which the client reads once the connection has closed.
 */
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as net from "node:net"
import type { SmtpApp, UserKey } from "../phases/SmtpApp.ts"
import * as SmtpEngine from "../internal/engine/Engine.ts"
import { make as resolve, type Options, type SmtpConfigError } from "../layers/SmtpServerConfig.ts"
import type { SmtpServerVersionError } from "../internal/engine/SmtpServerVersion.ts"
import { MemoryMessages, type StoredMessage } from "../services/MessageStore.ts"
import { MemorySocket } from "../internal/MemorySocket.ts"
import * as SmtpTestClient from "./SmtpTestClient.ts"

/** Where the client connects from, and how. */
export interface ConnectOptions {
  /** The client's address: 192.0.2.1 (TEST-NET-1, RFC 5737) unless given. */
  readonly remoteAddress?: string
  /** The client's port: 49152 unless given. */
  readonly remotePort?: number
  /**
   * TLS from the first byte, as on an implicit TLS port (a real handshake, in
   * memory). It needs the `tls` setting; the default, and the only choice
   * with `implicitTls`, is the `implicitTls` setting.
   */
  readonly secure?: boolean
  /** A certificate the client gives when the server asks for one (`requestClientCertificate`): PEM. */
  readonly certificate?: { readonly cert: string; readonly key: string }
}

/** Builds the test server into the current scope. */
const make = Effect.fnUntraced(function*<Cs, Ts, R, U extends UserKey>(app: SmtpApp<Cs, Ts, R, U>, options: Options = {}) {
  const settings = yield* resolve({ transcript: true, ...options })
  const seen = new Map<string, SmtpTestClient.Seen>()
  // What the app saw of each connection, told by the engine itself: the app runs as SmtpServer.layer runs it.
  const engine: SmtpEngine.SmtpEngine = yield* SmtpEngine.make(app, settings, {
    transactionEnded: (id, state) => seen.get(id)?.transactions.push(state),
    sessionEnded: (id, state, services, transcript) => {
      const record = seen.get(id)
      if (record === undefined) return
      record.services = services
      record.transcript = transcript
      Deferred.doneUnsafe(record.session, Exit.succeed(state))
    }
  })
  const clock = yield* Effect.context<never>()
  const clientTls = {
    rejectUnauthorized: false,
    ...(net.isIP(settings.hostname) === 0 ? { servername: settings.hostname } : {})
  }
  let opened = 0

  const open = (options: ConnectOptions) =>
    Effect.gen(function*() {
      const secure = options.secure ?? settings.implicitTls
      if (secure && Option.isNone(settings.tls)) {
        return yield* new SmtpTestClient.SmtpTestError({ message: "a secure connection needs the tls setting (a certificate)" })
      }
      if (!secure && settings.implicitTls) {
        return yield* new SmtpTestClient.SmtpTestError({ message: "an implicit TLS server takes secure connections only" })
      }
      const id = `test${++opened}`
      const record: SmtpTestClient.Seen = { session: Deferred.makeUnsafe(), services: undefined, transactions: [], transcript: [] }
      seen.set(id, record)
      const [client, server] = MemorySocket.pair(clock)
      const socketOptions = {
        id,
        remoteAddress: options.remoteAddress ?? "192.0.2.1",
        remotePort: options.remotePort ?? 49152,
        localAddress: settings.host,
        localPort: settings.port
      }
      const connection = { socket: client, seen: record, tls: { ...clientTls, ...options.certificate } }
      const refused = () =>
        Deferred.doneUnsafe(
          record.session,
          Effect.fail(new SmtpTestClient.SmtpTestError({ message: "the server refused the connection before a session started" }))
        )
      // Dropping the connection waits for the app's close phase.
      const drop = Effect.sync(() => client.destroy()).pipe(Effect.andThen(Effect.ignore(Deferred.await(record.session))))
      // The engine takes the connection, or refuses it (a connection limit) before any session starts.
      if (!secure) {
        if (!engine.server.accept(server, socketOptions)) refused()
        return { connection, drop }
      }
      // The server end goes through smtp-server's own implicit TLS handshake, as a socket of a TLS listener does.
      engine.server.acceptSecure(server, socketOptions, refused)
      return { connection: yield* SmtpTestClient.secure(connection), drop }
    })

  return SmtpTest.of({
    connect: (options = {}) =>
      Effect.acquireRelease(open(options), ({ drop }) => drop).pipe(
        Effect.flatMap(({ connection }) => SmtpTestClient.make(connection))
      )
  })
})

/** The test server. */
export class SmtpTest extends Context.Service<SmtpTest, {
  /** Opens a connection and reads the greeting; the connection is dropped when the scope closes. */
  readonly connect: (options?: ConnectOptions) => Effect.Effect<SmtpTestClient.SmtpTestClient, SmtpTestClient.SmtpTestError, Scope.Scope>
}>()("effect-smtp/SmtpTest") {
  /** Builds the test server into the current scope. */
  static readonly make = make

  /** Serves `app` in memory, with the settings `options` (validated as `SmtpServerConfig.layer` does). */
  static readonly layer = <Cs, Ts, R, U extends UserKey>(
    app: SmtpApp<Cs, Ts, R, U>,
    options: Options = {}
  ): Layer.Layer<SmtpTest, SmtpConfigError | SmtpServerVersionError, R> =>
    Layer.effect(SmtpTest, make(app, options))

  /** Opens a connection to the test server of the context. */
  static readonly connect = (
    options?: ConnectOptions
  ): Effect.Effect<SmtpTestClient.SmtpTestClient, SmtpTestClient.SmtpTestError, SmtpTest | Scope.Scope> =>
    SmtpTest.use((server) => server.connect(options))

  /** The messages a `MessageStore.layerMemory` store accepted (envelope, session and bytes), in order. */
  static readonly messages: Effect.Effect<ReadonlyArray<StoredMessage>, never, MemoryMessages> = MemoryMessages.use((memory) => memory.all)
}
