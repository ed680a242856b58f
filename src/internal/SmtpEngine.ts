/**
 * The adapter between smtp-server's callbacks and an app's Effect phases.
 *
 * `make` builds an smtp-server instance whose callbacks run the app's phase
 * chains as fibers with the app's services. Each callback is answered exactly
 * once and never synchronously. DATA is always drained. A client that goes
 * away interrupts its handlers, except a data handler whose message arrived
 * whole: that message is stored. Per-connection and per-transaction state is
 * built into scopes that close with the connection and the transaction. The
 * engine does not listen: `SmtpServer` does that, and the test kit hands it
 * in-memory sockets.
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import * as References from "effect/References"
import * as Result from "effect/Result"
import * as Scope from "effect/Scope"
import * as LogLevel from "effect/LogLevel"
import type * as net from "node:net"
import * as tls from "node:tls"
import { format } from "node:util"
import { SMTPServer } from "smtp-server"
import type { SMTPServerAddress, SMTPServerAuthentication, SMTPServerDataStream, SMTPServerOptions, SMTPServerSession } from "smtp-server"
import { SMTPConnection } from "smtp-server/lib/smtp-connection.js"
import { compose, endOfChain, type Link, phaseContext as marked } from "./MiddlewareChain.ts"
import * as Reject from "../phases/Reject.ts"
import type { Phase, SmtpApp } from "../phases/SmtpApp.ts"
import { Credentials, MailFrom, Message, RcptTo } from "../services/PhaseInput.ts"
import * as SmtpSession from "../services/SmtpSession.ts"
import * as SmtpTransaction from "../services/SmtpTransaction.ts"
import { decodeMailFrom, decodeRcptTo } from "./AddressDecoding.ts"
import * as Alarm from "./Alarm.ts"
import {
  authArgument,
  authenticationRequired,
  badBase64,
  badParameter,
  bdatRefused,
  COMMANDS,
  commandTimedOut,
  dataTimedOut,
  LAST_IN_GROUP,
  lineLimit,
  lineTooLong,
  outOfSync,
  overlongInput,
  SASL_TOKEN,
  tooManyClients,
  tooManyFromYou,
  tooMuchJunk,
  TRANSACTION,
  unrecognized,
  wellFormedParameters,
} from "./CommandRules.ts"
import { CommandStream } from "./CommandStream.ts"
import * as MessageBody from "./MessageBody.ts"
import * as MessageGuard from "./MessageGuard.ts"
import * as SmtpServerInternals from "./SmtpServerInternals.ts"
import { SmtpConfigError, type Settings } from "../layers/SmtpServerConfig.ts"

/** An Effect that has completed already (`Effect.succeed` makes one): its outcome is there without a fiber. */
const isDone = <A, E, R>(self: Effect.Effect<A, E, R>): self is Exit.Exit<A, E> => Exit.isExit(self)

/**
 * `around` with `added` on top. `Context.merge` sizes up its first argument,
 * which copies an overlaid context whole: an empty `added` (no state declared)
 * goes first.
 */
const withState = <A, B>(around: Context.Context<A>, added: Context.Context<B>): Context.Context<A | B> =>
  added.mapUnsafe.size === 0 ? Context.merge(added, around) : Context.merge(around, added)

/** A reply error as smtp-server reads it. */
type ReplyError = Error & { responseCode: number }

type Done = (error: ReplyError | null) => void

/** An open transaction: its envelope object in smtp-server marks which one it is. */
interface Transaction<Cs, Ts, R> {
  readonly envelope: SMTPServerSession["envelope"]
  /** Only when the app declares transaction state. */
  readonly scope: Scope.Closeable | undefined
  readonly ref: Ref.Ref<SmtpTransaction.Envelope>
  /** Everything a transaction phase sees: the app's services, the connection's and the transaction's. */
  readonly context: Context.Context<R | SmtpSession.SmtpSession | Cs | SmtpTransaction.SmtpTransaction | Ts>
}

/** What the adapter keeps for one connection. */
interface Connection<Cs, Ts, R> {
  readonly session: SMTPServerSession
  readonly scope: Scope.Closeable
  /** The session as the current phase sees it, taken when a handler first asks. */
  snapshot: SmtpSession.State | undefined
  readonly base: Context.Context<R | SmtpSession.SmtpSession>
  readonly fibers: Set<Fiber.Fiber<unknown, unknown>>
  state: Context.Context<R | SmtpSession.SmtpSession | Cs> | undefined
  transaction: Transaction<Cs, Ts, R> | undefined
  /** Set when the server shuts down: the next command gets 421 and the connection closes. */
  draining: boolean
  authFailures: number
  /** From DATA until its reply: a message in flight, even before its handler starts or after it ends. */
  inData: boolean
  /** The data handler's fiber while it runs, and its message: once the message is all here, the client leaving does not stop it. */
  delivering: { readonly fiber: Fiber.Fiber<unknown, unknown>; readonly message: SMTPServerDataStream } | undefined
}

/** The engine: an smtp-server instance wired to an app. */
export interface SmtpEngine {
  readonly server: SMTPServer
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

const toReplyError = (rejection: Reject.SmtpRejection): ReplyError =>
  Object.assign(new Error(`${rejection.enhanced} ${rejection.message}`), { responseCode: rejection.code })

const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /

/** How long a refused connection may stay open while its refusal is read. */
const REFUSED_LINGER = Duration.seconds(5)

const handshakeTimedOut = (): Error =>
  Object.assign(new Error("TLS handshake timeout"), { code: "ERR_TLS_HANDSHAKE_TIMEOUT" })

const optionalText = (value: string | false | null | undefined): Option.Option<string> =>
  typeof value === "string" && value !== "" ? Option.some(value) : Option.none()

const snapshot = (session: SMTPServerSession): SmtpSession.State => ({
  id: session.id,
  localAddress: session.localAddress,
  localPort: session.localPort,
  remoteAddress: session.remoteAddress,
  remotePort: session.remotePort,
  clientHostname: session.clientHostname || `[${session.remoteAddress}]`,
  secure: session.secure,
  tls: session.tlsOptions
    ? Option.some({
      protocol: session.tlsOptions.version ?? "",
      cipher: session.tlsOptions.name,
      servername: optionalText(session.servername)
    })
    : Option.none(),
  heloName: optionalText(session.hostNameAppearsAs),
  openingCommand: session.openingCommand === "HELO" || session.openingCommand === "EHLO" ||
      session.openingCommand === "LHLO"
    ? Option.some(session.openingCommand)
    : Option.none(),
  transmissionType: session.transmissionType ?? "SMTP",
  username: typeof session.user === "string" ? Option.some(session.user) : Option.none(),
  transactions: Math.max(0, (session.transaction ?? 1) - 1)
})

const smtpServerLevels: Record<string, LogLevel.Severity> = {
  trace: "Trace",
  debug: "Trace",
  info: "Debug",
  warn: "Warn",
  error: "Warn",
  fatal: "Error"
}

/** How the engine treats its connections. */
export interface Options {
  /**
   * Greet without smtp-server's 100 ms wait for clients that talk before the
   * greeting: for clients known to wait for it (the test kit's).
   */
  readonly greetAtOnce?: boolean
}

/** Builds the engine; it lives as long as the calling scope. */
export const make = Effect.fnUntraced(function*<Cs, Ts, R>(app: SmtpApp<Cs, Ts, R>, settings: Settings, engineOptions: Options = {}) {
  yield* SmtpServerInternals.check
  if (settings.authRequired && app.auth.length === 0) {
    return yield* new SmtpConfigError({ message: "authRequired is set but the app has no auth middleware to check credentials" })
  }
  const services = yield* Effect.context<R>()
  const serverScope = yield* Effect.scope
  const run = Effect.runForkWith(services)
  const minimumLevel = Context.get(services, References.MinimumLogLevel)
  const connections = new WeakMap<SMTPServerSession, Connection<Cs, Ts, R>>()
  const open = new Set<Connection<Cs, Ts, R>>()
  const engines = new Set<EngineConnection>()
  const byEngineSession = new WeakMap<SMTPServerSession, EngineConnection>()
  const perClient = new Map<string, number>()
  /** Deliveries of messages received whole whose client left before the reply: they finish, and shutdown waits. */
  const orphans = new Set<Fiber.Fiber<unknown, unknown>>()
  /** Waiting for every connection's close to have run (shutdown). */
  const whenClosed: Array<() => void> = []
  const countClient = (client: string, change: 1 | -1): void => {
    const count = (perClient.get(client) ?? 0) + change
    if (count <= 0) perClient.delete(client)
    else perClient.set(client, count)
  }
  let shuttingDown = false

  // smtp-server's own log lines go to Effect's logger, at levels that keep per-command chatter out of Info.
  const log = (level: string) => (data: Record<string, unknown>, template: string, ...args: ReadonlyArray<unknown>) => {
    const logLevel = smtpServerLevels[level] ?? "Debug"
    if (LogLevel.isLessThan(logLevel, minimumLevel)) return
    run(Effect.logWithLevel(logLevel)(format(template, ...args)).pipe(
      Effect.annotateLogs({
        component: "smtp-server",
        ...(typeof data["cid"] === "string" ? { sessionId: data["cid"] } : {}),
        ...(typeof data["host"] === "string" ? { remoteAddress: data["host"] } : {}),
        ...(typeof data["tnx"] === "string" ? { tnx: data["tnx"] } : {})
      })
    ))
  }
  const logger = {
    trace: log("trace"),
    debug: log("debug"),
    info: log("info"),
    warn: log("warn"),
    error: log("error"),
    fatal: log("fatal")
  }

  // One line per rejected command, whoever rejected it (a handler or smtp-server itself).
  const logRejection = (session: SMTPServerSession, code: number, text: string): void => {
    if (LogLevel.isLessThan("Info", minimumLevel)) return
    run(Effect.logInfo("rejected", { code, reply: text }).pipe(
      Effect.annotateLogs({ sessionId: session.id, remoteAddress: session.remoteAddress })
    ))
  }

  const unusedScope = Scope.makeUnsafe()

  // Every deadline of the engine (handlers, command lines, messages, TLS handshakes, unread replies).
  const alarm = yield* Alarm.make(run)
  const after = alarm.after

  /** Something a phase needs: here already, or the Effect that builds it. */
  type Prepared<A> = A | Effect.Effect<A, Reject.SmtpRejection, R>

  const connectionOf = (session: SMTPServerSession): Connection<Cs, Ts, R> => {
    const known = connections.get(session)
    if (known !== undefined) return known
    const current = (): SmtpSession.State => connection.snapshot ??= snapshot(session)
    const connection: Connection<Cs, Ts, R> = {
      session,
      scope: Scope.forkUnsafe(serverScope),
      snapshot: undefined,
      base: Context.add(services, SmtpSession.SmtpSession, SmtpSession.make(session.id, current)),
      fibers: new Set(),
      state: undefined,
      transaction: undefined,
      draining: shuttingDown,
      authFailures: 0,
      inData: false,
      delivering: undefined
    }
    connections.set(session, connection)
    open.add(connection)
    return connection
  }

  /** The connection's services, or the Effect that builds them the first time if the app's state needs one. */
  const connectionState = (connection: Connection<Cs, Ts, R>): Prepared<Context.Context<R | SmtpSession.SmtpSession | Cs>> => {
    if (connection.state !== undefined) return connection.state
    const built = app.connectionState(connection.base, connection.scope)
    const keep = (state: Context.Context<Cs>) => connection.state = withState(connection.base, state)
    return isDone(built) && Exit.isSuccess(built) ? keep(built.value) : Effect.map(built, keep)
  }

  /** Ends the connection's transaction; what is left to run, if its state has finalizers. */
  const endTransaction = (connection: Connection<Cs, Ts, R>): Effect.Effect<void> | undefined => {
    const transaction = connection.transaction
    if (transaction === undefined) return undefined
    connection.transaction = undefined
    return transaction.scope === undefined ? undefined : Scope.closeUnsafe(transaction.scope, Exit.void)
  }

  // smtp-server replaces the envelope object whenever a transaction ends (RSET, HELO, STARTTLS, after DATA).
  const openTransaction = (
    connection: Connection<Cs, Ts, R>,
    state: Context.Context<R | SmtpSession.SmtpSession | Cs>
  ): Prepared<Transaction<Cs, Ts, R>> => {
    const { service, ref } = SmtpTransaction.make(connection.session.transaction)
    const base = Context.add(state, SmtpTransaction.SmtpTransaction, service)
    const keep = (added: Context.Context<Ts>, scope: Scope.Closeable | undefined) =>
      connection.transaction = { envelope: connection.session.envelope, scope, ref, context: withState(base, added) }
    // Building an Effect runs nothing, so a builder can be asked first with a scope it will never touch: one that
    // answers with a completed Effect (no state declared) needs no scope of its own.
    const probed = app.transactionState(base, unusedScope)
    if (isDone(probed) && Exit.isSuccess(probed)) return keep(probed.value, undefined)
    const scope = Scope.forkUnsafe(connection.scope)
    return Effect.map(app.transactionState(base, scope), (added) => keep(added, scope))
  }

  /** The connection's current transaction, opened if the last one has ended. */
  const transactionOf = (connection: Connection<Cs, Ts, R>): Prepared<Transaction<Cs, Ts, R>> => {
    const current = connection.transaction
    if (current !== undefined && current.envelope === connection.session.envelope) return current
    const ending = endTransaction(connection)
    const state = connectionState(connection)
    if (ending === undefined && !Effect.isEffect(state)) return openTransaction(connection, state)
    return Effect.uninterruptible(ending ?? Effect.void).pipe(
      Effect.andThen(Effect.isEffect(state) ? state : Effect.succeed(state)),
      Effect.flatMap((state) => {
        const opened = openTransaction(connection, state)
        return Effect.isEffect(opened) ? opened : Effect.succeed(opened)
      })
    )
  }

  const replyFor = (cause: Cause.Cause<Reject.SmtpRejection>): ReplyError => {
    const rejection = Cause.findErrorOption(cause)
    if (Option.isSome(rejection)) return toReplyError(rejection.value)
    return toReplyError(Cause.hasInterruptsOnly(cause) ? Reject.shuttingDown : Reject.internalError)
  }

  /** The context a phase runs in: its inputs, annotated for the logs and marked for `compose`. */
  const phaseContext = <I>(connection: Connection<Cs, Ts, R>, phase: Phase, inputs: Context.Context<I>): Context.Context<I> =>
    marked(Context.add(inputs, References.CurrentLogAnnotations, {
      ...Context.get(inputs, References.CurrentLogAnnotations),
      sessionId: connection.session.id,
      remoteAddress: connection.session.remoteAddress,
      phase
    }))

  /** Runs `body` in a fiber whose context is the one it is given. */
  const runIn = <A, I>(context: Context.Context<I>, body: (context: Context.Context<I>) => Effect.Effect<A, Reject.SmtpRejection>) =>
    Effect.runForkWith(context)(body(context))

  /**
   * Runs one phase for a connection and answers smtp-server exactly once, on a
   * later turn of the event loop: a synchronous answer stalls pipelined input.
   * `body` runs in the phase's context, made from `inputs` (built first if they
   * need to be). A handler that suspends gets the phase's deadline, on the
   * app's Clock; one that completes at once needs neither a timer nor a record.
   * The fiber is returned while it runs.
   */
  const runPhase = <A, I>(
    connection: Connection<Cs, Ts, R>,
    phase: Phase,
    inputs: Prepared<Context.Context<I>>,
    body: (context: Context.Context<I>) => Effect.Effect<A, Reject.SmtpRejection>,
    answer: (exit: Exit.Exit<A, Reject.SmtpRejection>) => void
  ): Fiber.Fiber<A, Reject.SmtpRejection> | undefined => {
    connection.snapshot = undefined
    const fiber = Effect.isEffect(inputs)
      ? Effect.runForkWith(phaseContext(connection, phase, connection.base))(
        Effect.flatMap(inputs, (ready) => {
          const context = phaseContext(connection, phase, ready)
          return Effect.setContext(body(context), context)
        })
      )
      : runIn(phaseContext(connection, phase, inputs), body)
    let timedOut = false
    const settle = (exit: Exit.Exit<A, Reject.SmtpRejection>): void => {
      if (timedOut) return void setImmediate(answer, Exit.fail(Reject.timedOut))
      if (Exit.isFailure(exit)) {
        const defect = Cause.findDefect(exit.cause)
        if (Result.isSuccess(defect)) {
          run(Effect.logError("handler failed", Cause.die(defect.success)).pipe(
            Effect.annotateLogs({ sessionId: connection.session.id, remoteAddress: connection.session.remoteAddress, phase })
          ))
          return void setImmediate(answer, Exit.fail(Reject.internalError))
        }
      }
      setImmediate(answer, exit)
    }
    const now = fiber.pollUnsafe()
    if (now !== undefined) return void settle(now)
    connection.fibers.add(fiber)
    const cancel = after(settings.phaseTimeouts[phase], () => {
      timedOut = true
      fiber.interruptUnsafe()
    })
    fiber.addObserver((exit) => {
      connection.fibers.delete(fiber)
      cancel()
      settle(exit)
    })
    return fiber
  }

  const replyTo = (done: Done) => (exit: Exit.Exit<unknown, Reject.SmtpRejection>): void =>
    Exit.isSuccess(exit) ? done(null) : done(replyFor(exit.cause))

  const runChain = <Inputs>(
    links: ReadonlyArray<Link<void, Inputs, R>>,
    phase: Phase,
    context: Context.Context<Inputs | R>
  ): Effect.Effect<void, Reject.SmtpRejection> => compose(links, context, endOfChain(phase))

  const sessionPhase = (
    links: ReadonlyArray<Link<void, SmtpSession.SmtpSession | Cs, R>>,
    phase: "connect" | "secure"
  ) =>
  (session: SMTPServerSession, done: Done): void => {
    const connection = connectionOf(session)
    runPhase(connection, phase, connectionState(connection), (context) => runChain(links, phase, context), replyTo(done))
  }

  const tooManyAuthFailures = Reject.closing("4.7.0", "Too many failed authentication attempts")

  // A failure is answered later with every attempt, and the connection is closed at the limit.
  const authFailed = (connection: Connection<Cs, Ts, R>, username: string, rejection: Reject.SmtpRejection) =>
    Effect.suspend(() => {
      const failures = ++connection.authFailures
      const verdict = failures >= settings.maxAuthFailures ? tooManyAuthFailures : rejection
      return Effect.logWarning("authentication failed", { username, failures, code: verdict.code }).pipe(
        Effect.andThen(Effect.sleep(Duration.times(settings.authFailureDelay, failures))),
        Effect.andThen(Effect.fail(verdict))
      )
    })

  const onAuth = (auth: SMTPServerAuthentication, session: SMTPServerSession, done: (error: ReplyError | null, response?: { user: string }) => void): void => {
    const connection = connectionOf(session)
    const method = auth.method
    if ((method !== "PLAIN" && method !== "LOGIN") || !settings.authMethods.includes(method)) {
      return void setImmediate(done, toReplyError(Reject.permanent(504, "5.5.4", "Unrecognized authentication type")))
    }
    const username = auth.username ?? ""
    const credentials = Credentials.of({ method, username, password: Redacted.make(auth.password ?? "") })
    const state = connectionState(connection)
    const withCredentials = (state: Context.Context<R | SmtpSession.SmtpSession | Cs>) => Context.add(state, Credentials, credentials)
    runPhase(
      connection,
      "auth",
      Effect.isEffect(state) ? Effect.map(state, withCredentials) : withCredentials(state),
      (context) =>
        runChain(app.auth, "auth", context).pipe(
          Effect.tap(() => Effect.logInfo("authenticated", { username })),
          Effect.catch((rejection) => authFailed(connection, username, rejection))
        ),
      (exit) => Exit.isSuccess(exit) ? done(null, { user: username }) : done(replyFor(exit.cause))
    )
  }

  /** Runs a phase of the current transaction and records what it accepted in the envelope. */
  const transactionPhase = <Input, Key>(
    phase: "mailFrom" | "rcptTo",
    links: ReadonlyArray<Link<void, SmtpSession.SmtpSession | Cs | SmtpTransaction.SmtpTransaction | Ts | Key, R>>,
    key: Context.Key<Key, Input>,
    decode: (address: SMTPServerAddress, session: SMTPServerSession) => Result.Result<Input, Reject.SmtpRejection>,
    record: (envelope: SmtpTransaction.Envelope, input: Input) => SmtpTransaction.Envelope
  ) =>
  (address: SMTPServerAddress, session: SMTPServerSession, done: Done): void => {
    const connection = connectionOf(session)
    const decoded = decode(address, session)
    if (Result.isFailure(decoded)) return void setImmediate(done, toReplyError(decoded.failure))
    const input = decoded.success
    const transaction = transactionOf(connection)
    const withInput = (transaction: Transaction<Cs, Ts, R>) => Context.add(transaction.context, key, input)
    runPhase(
      connection,
      phase,
      Effect.isEffect(transaction) ? Effect.map(transaction, withInput) : withInput(transaction),
      (context) =>
        Effect.andThen(
          runChain(links, phase, context),
          Effect.suspend(() =>
            connection.transaction === undefined
              ? Effect.void
              : Ref.update(connection.transaction.ref, (envelope) => record(envelope, input))
          )
        ),
      replyTo(done)
    )
  }

  const onMailFrom = transactionPhase("mailFrom", app.mailFrom, MailFrom, decodeMailFrom, (envelope, sender) => ({
    ...envelope,
    mailFrom: Option.some(sender)
  }))

  const onRcptTo = transactionPhase(
    "rcptTo",
    app.rcptTo,
    RcptTo,
    (address, session) => decodeRcptTo(address, session.envelope.smtpUtf8 === true),
    (envelope, recipient) => ({
    ...envelope,
      rcptTo: [...envelope.rcptTo, recipient]
    })
  )

  const policy: MessageGuard.Policy = {
    bareLineEndings: settings.bareLineEndings,
    nulBytes: settings.nulBytes,
    maxLineLength: settings.maxLineLength
  }

  /**
   * Runs `onLate` once a message is late: past dataTimeout, or slower on average than minDataRate after a
   * grace of idleTimeout. A trickle of bytes extends neither. The returned function cancels it.
   */
  const watchMessage = (stream: SMTPServerDataStream, onLate: () => void): Alarm.Cancel => {
    const start = alarm.now()
    const last = start + Duration.toMillis(settings.dataTimeout)
    const grace = start + Duration.toMillis(settings.idleTimeout)
    const due = () => Math.min(last, grace + (stream.byteLength * 1000) / settings.minDataRate)
    let cancel: Alarm.Cancel = () => undefined
    // At each expiry the bytes received so far may have moved the deadline on: then it is set again.
    const arm = (): void => {
      cancel = alarm.at(due(), () => alarm.now() >= due() ? onLate() : arm())
    }
    arm()
    return () => cancel()
  }

  const onData = (stream: SMTPServerDataStream, session: SMTPServerSession, done: Done): void => {
    const connection = connectionOf(session)
    connection.inData = true
    const cancel = watchMessage(stream, () => {
      byEngineSession.get(session)?.refuse(dataTimedOut)
      run(Effect.logWarning("message not received in time").pipe(
        Effect.annotateLogs({ sessionId: session.id, remoteAddress: session.remoteAddress })
      ))
    })
    stream.once("end", cancel)
    stream.once("close", cancel)
    // Every byte passes the guard, read by the handler or drained.
    const guard = new MessageGuard.MessageGuard(policy)
    const message = Message.of({ stream: MessageBody.fromReadable(stream, settings.maxMessageSize, guard) })
    const withMessage = (transaction: Transaction<Cs, Ts, R>) => Context.add(transaction.context, Message, message)
    const start = (): void => {
      stream.off("readable", start)
      stream.off("close", start)
      const transaction = transactionOf(connection)
      const fiber = runPhase(
        connection,
        "data",
        Effect.isEffect(transaction) ? Effect.map(transaction, withMessage) : withMessage(transaction),
        (context) => runChain(app.data, "data", context).pipe(Effect.ensuring(Effect.suspend(() => endTransaction(connection) ?? Effect.void))),
        (exit) =>
          // The verdict on the content wins over the handler's, and it is known only once all of it was read.
          MessageBody.drain(stream, guard, () => {
            connection.inData = false
            connection.delivering = undefined
            if (guard.verdict !== undefined) done(toReplyError(guard.verdict))
            else replyTo(done)(exit)
          })
      )
      if (fiber !== undefined && connection.inData) connection.delivering = { fiber, message: stream }
    }
    // The handler starts with the first bytes of the message (or its end, or the client leaving): before them
    // it could only wait, and every wait costs a suspension of its fiber.
    stream.on("readable", start)
    stream.on("close", start)
  }

  const onClose = (session: SMTPServerSession): void => {
    // A connection no phase ran for still gets its close phase, unless it closed before smtp-server greeted it.
    const connection = connections.get(session) ?? (session.envelope === undefined ? undefined : connectionOf(session))
    if (connection === undefined) return
    connections.delete(session)
    // A message that arrived whole is stored even if its client left before the reply (the client's retry may then
    // bring it twice, as with any MTA); everything else the connection runs is interrupted.
    const delivering = connection.delivering
    const finishing = delivering !== undefined && delivering.message.writableEnded ? delivering.fiber : undefined
    if (finishing !== undefined) {
      // It keeps its client's connection slots until it is done.
      const client = byEngineSession.get(session)?.client
      orphans.add(finishing)
      if (client !== undefined) countClient(client, 1)
      finishing.addObserver(() => {
        orphans.delete(finishing)
        if (client !== undefined) countClient(client, -1)
      })
    }
    const closing = Effect.gen(function*() {
      connection.snapshot = undefined
      yield* Fiber.interruptAll([...connection.fibers].filter((fiber) => fiber !== finishing))
      if (finishing !== undefined) yield* Fiber.await(finishing)
      if (app.close.length > 0) {
        const state = connectionState(connection)
        const context = phaseContext(connection, "close", Effect.isEffect(state) ? yield* state : state)
        yield* Effect.setContext(runChain(app.close, "close", context), context).pipe(
          Effect.timeoutOrElse({ duration: settings.phaseTimeouts.close, orElse: () => Effect.fail(Reject.timedOut) }),
          Effect.catchCause((cause) => Effect.logWarning("close handler failed", cause)),
          Effect.annotateLogs({ sessionId: session.id, remoteAddress: session.remoteAddress, phase: "close" })
        )
      }
    }).pipe(
      Effect.ensuring(Effect.suspend(() => endTransaction(connection) ?? Effect.void)),
      Effect.ensuring(Scope.close(connection.scope, Exit.void)),
      Effect.ensuring(Effect.sync(() => {
        open.delete(connection)
        if (open.size === 0) for (const wake of whenClosed.splice(0)) wake()
      }))
    )
    run(closing)
  }

  const onSecure = sessionPhase(app.secure, "secure")

  const disabledCommands = [
    ...(Option.isNone(settings.tls) || settings.implicitTls ? ["STARTTLS"] : []),
    ...(app.auth.length === 0 ? ["AUTH"] : [])
  ]
  const disabledBeforeTls = [...disabledCommands, "AUTH"]

  const usesTransactions = app.mailFrom.length > 0 || app.rcptTo.length > 0 || app.data.length > 0

  const options: SMTPServerOptions = {
    name: settings.hostname,
    ...(Option.isSome(settings.banner) ? { banner: settings.banner.value } : {}),
    size: settings.maxMessageSize,
    rejectOversized: true,
    maxRecipients: settings.maxRecipients,
    // Connection limits are the engine's, with enhanced codes (see EngineServer.connect).
    maxClients: Number.POSITIVE_INFINITY,
    socketTimeout: Duration.toMillis(settings.idleTimeout),
    // smtp-server's own last resort after shutdownTimeout; Node's timers fire at once past 2^31 - 1 ms.
    closeTimeout: Math.min(Duration.toMillis(settings.shutdownTimeout) + 1000, 2 ** 31 - 1),
    hideENHANCEDSTATUSCODES: false,
    authMethods: [...settings.authMethods],
    authOptional: !settings.authRequired,
    allowInsecureAuth: settings.allowInsecureAuth,
    disableReverseLookup: true,
    disabledCommands,
    secure: settings.implicitTls,
    minVersion: "TLSv1.2",
    ...Option.match(settings.tls, {
      onNone: () => ({}),
      onSome: (certificate) => ({ cert: certificate.cert, key: Redacted.value(certificate.key) })
    }),
    logger,
    ...(app.connect.length > 0 ? { onConnect: sessionPhase(app.connect, "connect") } : {}),
    ...(app.secure.length > 0
      ? { onSecure: (_socket: net.Socket | tls.TLSSocket, session: SMTPServerSession, done: Done) => onSecure(session, done) }
      : {}),
    ...(app.auth.length > 0 ? { onAuth } : {}),
    // The envelope is tracked through MAIL and RCPT whenever any transaction phase has middleware.
    ...(usesTransactions ? { onMailFrom, onRcptTo } : {}),
    ...(app.data.length > 0 ? { onData } : {}),
    onClose
  }

  /** smtp-server's connection, taught our reply format and the shutdown rule. */
  class EngineConnection extends SMTPConnection {
    private greeted = false
    private released = false
    /** The verb of the command being handled ("" in an AUTH exchange). */
    private verb = ""
    private junkCommands = 0
    /** Set while a command that must end its group waits a turn for TLS records read with it. */
    private settled = false
    /** Cancels the deadline of a command line that has begun; set while one is open. */
    private lineDeadline: Alarm.Cancel | undefined = undefined
    /** Cancels the write-stall deadline; set while replies wait for the client to read them. */
    private stalled: Alarm.Cancel | undefined = undefined
    /** The address the connection counts against in the per-client limit. */
    readonly client: string
    constructor(client: string, ...[server, socket, socketOptions]: ConstructorParameters<typeof SMTPConnection>) {
      super(server, socket, socketOptions)
      this.client = client
      // A socket that is TLS already makes a secure session whatever the listener: the test kit's secure connections.
      if (socket instanceof tls.TLSSocket && !this.secure) {
        this.session.secure = this.secure = true
        this.tlsOptions = socket.getCipher()
      }
    }
    override init(): void {
      super.init()
      if (engineOptions.greetAtOnce === true) this.connectionReady()
    }
    override connectionReady(next?: () => void): void {
      // Once only: with greetAtOnce, the early-talker timer of init() still calls it.
      if (this.greeted) return
      this.greeted = true
      super.connectionReady(next)
    }
    override _createParser(): CommandStream {
      // smtp-server's own parser, which also counts what the client sent ahead of each command.
      const parser = new CommandStream(
        { maxCommandLength: this._server.options.maxCommandLength },
        (open) => this.watchLine(open && !this._upgrading)
      )
      parser.oncommand = (command, callback) => {
        parser.dispatched(command)
        this._onCommand(command, callback)
      }
      // The parser fails only on a line far longer than any command may be.
      parser.on("error", () => this.refuse(overlongInput))
      return parser
    }

    // A command line must be complete within commandTimeout of its first byte, however slowly it trickles in.
    // The deadline is armed only when a read ends in the middle of a line, which ordinary clients never do.
    private watchLine(open: boolean): void {
      if (!open) {
        this.lineDeadline?.()
        this.lineDeadline = undefined
      } else {
        this.lineDeadline ??= after(settings.commandTimeout, () => this.refuse(commandTimedOut))
      }
    }

    /** Bytes the client sent after the command being handled. */
    private ahead(): number {
      return (this._parser instanceof CommandStream ? this._parser.ahead : 0) + this._socket.readableLength
    }

    override send(code: number, data?: string | Array<string> | null, context?: string | false): void {
      // smtp-server's own limit on unknown commands is a policy refusal: 4.7.0, not its default 4.4.2.
      if (code === 421 && data === "Error: too many unrecognized commands") return this.refuse(tooMuchJunk)
      // smtp-server refuses MAIL and RCPT parameters it cannot parse with a bare 501: they get 555 5.5.4.
      const own = typeof data === "string" && ENHANCED.test(data)
      if (code === 501 && context === undefined && !own && (this.verb === "MAIL" || this.verb === "RCPT")) {
        return this.send(555, `5.5.4 ${typeof data === "string" ? data : "Invalid parameter"}`)
      }
      // Rejections carry their own enhanced code: keep smtp-server from adding a second one.
      super.send(code, data, own ? false : context)
      // An answer to a client that has gone (its handler interrupted) is not a rejection worth a log line.
      if (code >= 400 && !this._closed) logRejection(this.session, code, typeof data === "string" ? data : String(data))
      if (code === 421 && own) this.close()
      this.watchStall()
      // While the server shuts down, the reply that ends a connection's last piece of work is followed by 421.
      if (!shuttingDown) return
      const record = connections.get(this.session)
      const final = code >= 200 && !(code >= 300 && code < 400) && code !== 421
      if (final && record?.draining === true && record.fibers.size === 0 && !record.inData && !this._closing) {
        this.refuse(Reject.shuttingDown)
      }
    }

    // smtp-server stops reading commands while replies wait for the client to read them; this bounds the wait.
    private watchStall(): void {
      const socket = this._socket
      if (this.stalled !== undefined || !socket.writableNeedDrain || socket.destroyed) return
      const cancel = after(settings.writeStallTimeout, () => {
        logger.warn({ cid: this.id, host: this.remoteAddress }, "client left its replies unread, disconnecting")
        socket.destroy()
      })
      const stalled = () => {
        this.stalled = undefined
        socket.off("drain", stalled)
        socket.off("close", stalled)
        cancel()
      }
      this.stalled = stalled
      socket.once("drain", stalled)
      socket.once("close", stalled)
    }

    override upgrade(callback: () => void, secureCallback?: () => void): void {
      // upgrade() removes every listener from the plaintext socket, a stall watch's too.
      this.stalled?.()
      super.upgrade(callback, secureCallback)
    }

    override _armTimeout(socket?: net.Socket): void {
      // upgrade() arms the TLS socket it has just made: the handshake must end within tlsHandshakeTimeout.
      if (socket instanceof tls.TLSSocket && socket !== this._socket && this._upgrading) {
        const cancel = after(settings.tlsHandshakeTimeout, () => socket.destroy(handshakeTimedOut()))
        socket.once("secure", cancel)
        socket.once("close", cancel)
      }
      super._armTimeout(socket)
    }

    override _onClose(): void {
      super._onClose()
      this.watchLine(false)
      // Counted here rather than on the socket's "close": STARTTLS removes every listener from the plaintext socket.
      if (this.released) return
      this.released = true
      engines.delete(this)
      countClient(this.client, -1)
    }

    override _onCommand(command: Buffer, callback?: () => void): void {
      if (this._upgrading) return super._onCommand(command, callback)
      const connection = connections.get(this.session)
      if (connection?.draining ?? shuttingDown) return this.refuse(Reject.shuttingDown)
      const word = command.toString("latin1", 0, 16).split(" ", 1)[0]!
      // smtp-server upper-cases the verb as UTF-8, where "ı" is "I" and "ſ" is "S": a verb of anything but ASCII
      // letters would reach it as a command the checks below never saw.
      if (this._nextHandler === false && !/^[A-Za-z]+$/.test(word)) {
        if (++this.junkCommands > settings.maxJunkCommands) return this.refuse(tooMuchJunk)
        return this.reject(unrecognized, callback)
      }
      const verb = word.toUpperCase()
      this.verb = this._nextHandler === false ? verb : ""
      const mustWait = LAST_IN_GROUP.has(verb) || this.openingCommand === "HELO"
      if (this._nextHandler === false && mustWait && this.secure && !this.settled) {
        // A TLS socket hands over one record at a time, so records read with this one are not queued yet: wait a
        // turn for them to count as sent ahead.
        this.settled = true
        return void setImmediate(() => this._closing || this._closed || this._onCommand(command, callback))
      }
      this.settled = false
      // Plaintext behind STARTTLS would be read inside the TLS session (RFC 3207 section 4), whatever the setting.
      // Counted only for the commands the rules are about, not for every command.
      const mustBeLast = verb === "STARTTLS" || (settings.rejectUnauthorizedPipelining && mustWait)
      if (this._nextHandler === false && mustBeLast && this.ahead() > 0) return this.refuse(outOfSync)
      // CHUNKING is not offered: a BDAT payload would otherwise be read as commands.
      if (verb === "BDAT") return this.refuse(bdatRefused)
      if (command.length + 2 > lineLimit(this._nextHandler === false ? verb : "AUTH")) {
        this._nextHandler = false
        return this.reject(lineTooLong, callback)
      }
      if ((verb === "MAIL" || verb === "RCPT") && this._nextHandler === false && !wellFormedParameters(command)) {
        return this.reject(badParameter, callback)
      }
      if (this._nextHandler !== false || verb === "AUTH") {
        // A SASL response, or AUTH with an initial response: strict base64, or "*" to cancel.
        const token = this._nextHandler !== false ? command.toString("latin1").trim() : authArgument(command)
        if (token !== undefined && !SASL_TOKEN.test(token)) {
          this._nextHandler = false
          return this.reject(badBase64, callback)
        }
      } else if (!COMMANDS.has(verb) && ++this.junkCommands > settings.maxJunkCommands) {
        return this.refuse(tooMuchJunk)
      }
      if (settings.authRequired && TRANSACTION.has(verb) && this._nextHandler === false && !this.session.user) {
        return this.reject(authenticationRequired, callback)
      }
      // AUTH is neither offered nor accepted before TLS (unless insecure AUTH is explicitly allowed).
      this.session.disabledCommands = this.secure || settings.allowInsecureAuth ? disabledCommands : disabledBeforeTls
      super._onCommand(command, callback)
    }

    /** Answers with a rejection and goes on reading commands. */
    reject(rejection: Reject.SmtpRejection, callback?: () => void): void {
      this.send(rejection.code, `${rejection.enhanced} ${rejection.message}`)
      if (callback !== undefined) setImmediate(callback)
    }

    /** Answers and hangs up: nothing the client sent after this command is read. */
    refuse(rejection: Reject.SmtpRejection): void {
      this.send(rejection.code, `${rejection.enhanced} ${rejection.message}`)
      this.close()
    }
  }

  class EngineServer extends SMTPServer {
    /** Implicit TLS handshakes in progress: they count against both connection limits. */
    private handshakes = 0

    /** The limit a new connection from `client` would break, if any. */
    private limitFor(client: string): Reject.SmtpRejection | undefined {
      // A message still being stored for a client that left counts as the connection it was.
      if (engines.size + this.handshakes + orphans.size >= settings.maxClients) return tooManyClients
      return (perClient.get(client) ?? 0) >= settings.maxConnectionsPerClient ? tooManyFromYou : undefined
    }

    override connect(socket: net.Socket | tls.TLSSocket, socketOptions?: ConstructorParameters<typeof SMTPConnection>[2]): void {
      const client = socketOptions?.remoteAddress ?? socket.remoteAddress ?? ""
      const refused = this.limitFor(client)
      if (refused !== undefined) {
        logger.info({ host: client, tnx: "refused" }, "refused %s: %s", client, refused.message)
        socket.on("error", () => undefined)
        // Reads and drops what the client sends, so its FIN is seen, and never holds the socket for long.
        socket.resume()
        const cancel = after(REFUSED_LINGER, () => socket.destroy())
        socket.once("close", cancel)
        return void socket.end(`${refused.line}\r\n`)
      }
      countClient(client, 1)
      const connection = new EngineConnection(client, this, socket, socketOptions)
      this.connections.add(connection)
      engines.add(connection)
      byEngineSession.set(connection.session, connection)
      connection.on("error", (error: Error) => this._onError(error))
      connection.on("connect", (data: Parameters<SMTPServer["_onClientConnect"]>[0]) => this._onClientConnect(data))
      connection.init()
    }

    override _acceptSocket(socket: net.Socket, handshake: boolean): (() => void) | false {
      if (!handshake) return super._acceptSocket(socket, handshake)
      // Nothing can be said before the handshake: a connection past a limit is dropped.
      const client = socket.remoteAddress ?? ""
      const refused = this.limitFor(client)
      if (refused !== undefined) {
        logger.info({ host: client, tnx: "refused" }, "refused %s before its TLS handshake: %s", client, refused.message)
        socket.on("error", () => undefined)
        socket.destroy()
        return false
      }
      const release = super._acceptSocket(socket, handshake)
      if (release === false) return false
      this.handshakes++
      countClient(client, 1)
      let counted = true
      const uncount = () => {
        if (!counted) return
        counted = false
        this.handshakes--
        countClient(client, -1)
      }
      socket.once("close", uncount)
      return () => {
        uncount()
        release()
      }
    }

    override _upgrade(socket: net.Socket, callback: (error: Error | null, tlsSocket?: tls.TLSSocket) => void): void {
      // Implicit TLS: the handshake must end within tlsHandshakeTimeout, however its bytes trickle in.
      // The TLS socket is the one to destroy: tearing the raw one down under it would skip its error handling.
      const cancel = after(settings.tlsHandshakeTimeout,
        () => (this._pendingSockets.get(socket) ?? socket).destroy(handshakeTimedOut())
      )
      super._upgrade(socket, (error, tlsSocket) => {
        cancel()
        callback(error, tlsSocket)
      })
    }
  }

  const server = new EngineServer(options)
  // Without a listener, an 'error' event would end the process.
  server.on("error", (error: Error) => logger.warn({}, "smtp-server: %s", error.message))

  // A delivery that outlived its client is in its connection's fibers until that connection's close has run.
  const busy = () => {
    let count = 0
    for (const connection of open) if (connection.fibers.size > 0 || connection.inData) count++
    return count
  }

  /**
   * Waits until every connection's close has run, deliveries that outlived
   * their clients included. The listener's close can report before the last
   * socket's own close event, and so before its onClose.
   */
  const settled: Effect.Effect<void> = Effect.callback<void>((resume) => {
    if (open.size === 0) return resume(Effect.void)
    const wake = () => resume(Effect.void)
    whenClosed.push(wake)
    return Effect.sync(() => {
      const index = whenClosed.indexOf(wake)
      if (index >= 0) whenClosed.splice(index, 1)
    })
  })

  const drainAll = Effect.sync(() => {
    shuttingDown = true
    for (const connection of open) connection.draining = true
    for (const connection of engines) {
      const record = connections.get(connection.session)
      if (record === undefined || (record.fibers.size === 0 && !record.inData)) {
        connection.send(421, `${Reject.shuttingDown.enhanced} ${Reject.shuttingDown.message}`)
      }
    }
  })

  const abort = Effect.gen(function*() {
    for (const connection of engines) {
      connection.send(421, `${Reject.shuttingDown.enhanced} ${Reject.shuttingDown.message}`)
    }
    yield* Fiber.interruptAll([...orphans, ...[...open].flatMap((connection) => [...connection.fibers])])
  })

  const engine: SmtpEngine = {
    server,
    connections: () => engines.size,
    busy,
    drain: drainAll,
    settled,
    abort
  }
  return engine
})
