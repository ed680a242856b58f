/**
 * The engine: an smtp-server instance wired to an app.
 *
 * `make` builds the parts (the registry of connections, the phase runner,
 * the state of sessions, the deadlines, the logging, the phases as
 * smtp-server's callbacks) and hands smtp-server the hooks that connect them.
 * It does not listen: `SmtpServer` listens on TCP with smtp-server's own
 * listener, and the test kit hands the engine in-memory connections.
 */
import * as Duration from "effect/Duration"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Dns from "effect/net/Dns"
import * as Host from "effect/net/Host"
import * as NodeDns from "@effect/platform-node/NodeDns"
import type { SMTPServerOptions, SMTPServerSession } from "smtp-server"
import * as Reject from "../../phases/Reject.ts"
import type { SmtpApp, UserKey } from "../../phases/SmtpApp.ts"
import { SmtpConfigError, type Settings } from "../../layers/SmtpServerConfig.ts"
import * as Alarm from "../Alarm.ts"
import { type ConnectionRecord, isBusy, Registry } from "./Connections.ts"
import { Deadlines } from "./Deadlines.ts"
import { PhaseRunner } from "./PhaseRunner.ts"
import { Phases } from "./Phases.ts"
import { type Observer, SessionState } from "./SessionState.ts"
import type * as Hooks from "./Hooks.ts"
import * as SmtpServerHooks from "./SmtpServerHooks.ts"
import { Telemetry } from "./Telemetry.ts"
import { versionError } from "./SmtpServerVersion.ts"

/** How long a refused connection may stay open while its refusal is read. */
const REFUSED_LINGER = Duration.seconds(5)

/** The engine: an smtp-server instance wired to an app. */
export interface SmtpEngine {
  readonly server: Hooks.Server
  /** Open connections. */
  readonly connections: () => number
  /** Connections with a handler running (a message in flight, for instance). */
  readonly busy: () => number
  /** Stops accepting commands: idle connections get 421 and close, busy ones after their reply. */
  readonly drain: Effect.Effect<void>
  /** Completes once every connection's close has run: no message whose client left is still being stored. */
  readonly settled: Effect.Effect<void>
  /** Ends every connection: handlers still running are interrupted. */
  readonly abort: Effect.Effect<void>
}

/** Builds the engine; it lives as long as the calling scope. */
export const make = Effect.fnUntraced(function*<Cs, Ts, R, U extends UserKey>(
  app: SmtpApp<Cs, Ts, R, U>,
  settings: Settings,
  observer?: Observer
) {
  // The engine runs only on an smtp-server that has every member it relies on.
  const absent = SmtpServerHooks.missing()
  if (absent.length > 0) return yield* versionError(absent)
  if (settings.authRequired && app.auth.length === 0) {
    return yield* new SmtpConfigError({ message: "authRequired is set but the app has no auth middleware to check credentials" })
  }
  const services = yield* Effect.context<R>()
  const run = Effect.runForkWith(services)
  const telemetry = new Telemetry(services, settings, run)
  const logging = telemetry.logging
  // Every deadline of the engine (handlers, command lines, messages, TLS handshakes, unread replies).
  const alarm = yield* Alarm.make(run)
  const deadlines = new Deadlines(alarm, settings)
  const registry = new Registry<Cs, Ts, R>(settings)
  const state = new SessionState(app, services, yield* Effect.scope, observer)
  const records = new WeakMap<SMTPServerSession, ConnectionRecord<Cs, Ts, R>>()
  const recordOf = (session: SMTPServerSession): ConnectionRecord<Cs, Ts, R> => {
    const record = records.get(session)
    if (record === undefined) throw new Error(`no connection for session ${session.id}`)
    return record
  }
  const runner = new PhaseRunner(services, settings.phaseTimeouts, alarm, telemetry)
  // Reverse lookups go through the app's `Dns` service where it provides one (a test's), otherwise Node's resolver.
  const dns = settings.reverseLookup
    ? Option.getOrUndefined(Context.getOption(services, Dns.Dns)) ?? (yield* Effect.orDie(NodeDns.make()))
    : undefined
  const lookup = dns === undefined ? undefined : (record: ConnectionRecord<Cs, Ts, R>) =>
    dns.reverse(record.session.remoteAddress).pipe(
      Effect.timeoutOption(settings.reverseLookupTimeout),
      // Resolvers give fully qualified names ("mail.example."): the trace fields want the usual form.
      Effect.map(Option.map((names) => record.connection.named(Host.toRelative(names[0])))),
      Effect.ignore
    )
  const phases = new Phases({ app, lookup, settings, runner, state, registry, deadlines, telemetry, recordOf, run, observer })
  let shuttingDown = false

  const disabled = [
    ...(Option.isNone(settings.tls) || settings.implicitTls ? ["STARTTLS"] : []),
    ...(app.auth.length === 0 ? ["AUTH"] : [])
  ]
  const disabledBeforeTls = [...disabled, "AUTH"]

  // A client that leaves its replies unread past writeStallTimeout.
  const stalled = (record: ConnectionRecord<Cs, Ts, R>): void => {
    logging.warning("client left its replies unread, disconnecting", { sessionId: record.session.id, remoteAddress: record.session.remoteAddress })
    record.connection.socket.destroy()
  }

  const hooks: Hooks.Hooks<ConnectionRecord<Cs, Ts, R>> = {
    admit: (client) => registry.limitFor(client),
    refused: (socket, client, rejection) => {
      telemetry.refused(client, rejection, true)
      socket.on("error", () => undefined)
      // Reads and drops what the client sends, so its FIN is seen, and never holds the socket for long.
      socket.resume()
      const cancel = alarm.after(REFUSED_LINGER, () => socket.destroy())
      socket.once("close", cancel)
      socket.end(`${rejection.line}\r\n`)
    },
    count: (client, kind) => registry.count(client, kind === "connection"),
    opened: (connection) => {
      const record = state.open(connection, shuttingDown, telemetry.connection())
      registry.open.add(record)
      records.set(connection.session, record)
      return record
    },
    rules: settings,
    draining: (record) => record.draining,
    disabledCommands: (secure) => secure || settings.allowInsecureAuth ? disabled : disabledBeforeTls,
    lineOpen: (record, open) => deadlines.line(record, open),
    dropped: (client, rejection) => telemetry.refused(client, rejection, false),
    received: (record, line, sasl) => telemetry.received(record, line, sasl),
    replied: (record, code, enhanced, text, verb, gone) => {
      const connection = record.connection
      // Counted as smtp-server's session does not: transactions when they start, messages when they are accepted.
      if (code === 250 && verb === "MAIL") record.started++
      else if (code === 250 && verb === "DATA") record.messages++
      telemetry.replied(record, code, enhanced, text, verb, gone)
      deadlines.replies(record, stalled)
      // While the server shuts down, the reply that ends a connection's last piece of work is followed by 421.
      const final = code >= 200 && !(code >= 300 && code < 400) && code !== 421
      if (shuttingDown && final && record.draining && !isBusy(record) && !connection.ended) connection.refuse(Reject.shuttingDown)
    },
    upgrading: (record) => {
      record.stalled?.()
      phases.loggedOut(record)
    },
    handingOver: (record) => phases.handingOver(record),
    proxied: (record, handover, answer) => phases.proxied(record, handover, answer),
    handshakeDeadline: (expire) => alarm.after(settings.tlsHandshakeTimeout, expire),
    logger: logging.smtpServer
  }

  const options: SMTPServerOptions = {
    name: settings.hostname,
    ...(Option.isSome(settings.banner) ? { banner: settings.banner.value } : {}),
    size: settings.maxMessageSize,
    // The engine refuses a message over the limit itself, with the handler's own 552 where it maps MessageTooLarge.
    rejectOversized: false,
    maxRecipients: settings.maxRecipients,
    // Connection limits are the engine's, with enhanced codes (see SmtpServerHooks).
    maxClients: Number.POSITIVE_INFINITY,
    socketTimeout: Duration.toMillis(settings.idleTimeout),
    // smtp-server's own last resort after shutdownTimeout; Node's timers fire at once past 2^31 - 1 ms.
    closeTimeout: Math.min(Duration.toMillis(settings.shutdownTimeout) + 1000, 2 ** 31 - 1),
    hideENHANCEDSTATUSCODES: false,
    authMethods: [...settings.authMethods],
    authOptional: !settings.authRequired,
    allowInsecureAuth: settings.allowInsecureAuth,
    disableReverseLookup: true,
    useXClient: settings.xclientPeers.length > 0 ? [...settings.xclientPeers] : false,
    useXForward: settings.xforwardPeers.length > 0 ? [...settings.xforwardPeers] : false,
    disabledCommands: disabled,
    secure: settings.implicitTls,
    minVersion: "TLSv1.2",
    // A client certificate is asked for, and judged by the app, not by the handshake.
    ...(settings.requestClientCertificate ? { requestCert: true, rejectUnauthorized: false } : {}),
    ...Option.match(settings.tls, {
      onNone: () => ({}),
      onSome: (certificate) => ({ cert: certificate.cert, key: Redacted.value(certificate.key) })
    }),
    logger: logging.smtpServer,
    onConnect: phases.connect,
    // Always: every TLS session is counted, with secure middleware or without.
    onSecure: (_socket: unknown, session: SMTPServerSession, done: (error: Hooks.ReplyError | null) => void) => {
      telemetry.secured(recordOf(session))
      phases.secure(session, done)
    },
    ...(app.auth.length > 0 ? { onAuth: phases.auth } : {}),
    // The envelope is tracked through MAIL and RCPT whenever any transaction phase has middleware.
    ...(app.mailFrom.length > 0 || app.rcptTo.length > 0 || app.data.length > 0 ? { onMailFrom: phases.mailFrom, onRcptTo: phases.rcptTo } : {}),
    // Always: every message passes the guard and the size limit, with data middleware or without.
    onData: phases.data,
    onClose: phases.close
  }
  const server = SmtpServerHooks.make(options, hooks)
  // Without a listener, an 'error' event would end the process.
  server.on("error", (error) => logging.smtpServer.warn({ err: error }, "smtp-server: %s", error.message))

  const live = function*() {
    for (const record of registry.open) if (!record.connection.ended) yield record
  }

  const engine: SmtpEngine = {
    server,
    connections: () => registry.connections,
    busy: () => registry.busy(),
    drain: Effect.sync(() => {
      shuttingDown = true
      for (const record of registry.open) record.draining = true
      for (const record of live()) if (!isBusy(record)) record.connection.refuse(Reject.shuttingDown)
    }),
    settled: registry.settled,
    abort: Effect.suspend(() => {
      for (const record of live()) record.connection.refuse(Reject.shuttingDown)
      return Fiber.interruptAll([...registry.orphans, ...[...registry.open].flatMap((record) => [...record.fibers])])
    })
  }
  return engine
})
