/**
 * The app's phases as smtp-server's callbacks: each builds the phase's inputs
 * (connection state at connect, the transaction at MAIL, the decoded address,
 * the credentials, the message) and runs the phase's chain with the runner.
 *
 * DATA is always drained, and the verdict on its content wins over the
 * handler's. A client that leaves interrupts its phases, except a data
 * handler whose message arrived whole: that message is stored, and the close
 * phase waits for it.
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as MutableRef from "effect/MutableRef"
import * as Result from "effect/Result"
import * as Scope from "effect/Scope"
import type { SMTPServerAddress, SMTPServerAuthentication, SMTPServerDataStream, SMTPServerSession } from "smtp-server"
import type { SmtpReply } from "../../phases/Accept.ts"
import type { DataError } from "../../phases/Middleware.ts"
import * as Reject from "../../phases/Reject.ts"
import type { Connected as ConnectedTo, InTransaction as InTransactionOf, SmtpApp, UserKey } from "../../phases/SmtpApp.ts"
import { Credentials, MailFrom, Message, RcptTo, TlsSession } from "../../services/PhaseInput.ts"
import * as SmtpSession from "../../services/SmtpSession.ts"
import * as SmtpTransaction from "../../services/SmtpTransaction.ts"
import type { Settings } from "../../layers/SmtpServerConfig.ts"
import { decodeMailFrom, decodeRcptTo } from "../AddressDecoding.ts"
import * as MessageBody from "../MessageBody.ts"
import * as MessageGuard from "../MessageGuard.ts"
import { compose, composeAll, endOfAuth } from "../MiddlewareChain.ts"
import type { ConnectionRecord, Registry, Transaction } from "./Connections.ts"
import type { Deadlines } from "./Deadlines.ts"
import type { Telemetry } from "./Telemetry.ts"
import { ownRejection, type PhaseRunner, rejectionFor, replyError, replyFor, replyTo } from "./PhaseRunner.ts"
import { type Observer, type SessionState, snapshot } from "./SessionState.ts"
import type { ReplyError } from "./Hooks.ts"

type Done = (error: ReplyError | null) => void

type Connected<Cs, R> = R | ConnectedTo<Cs>
type InTransaction<Cs, Ts, R> = R | InTransactionOf<Cs, Ts>

/** The callbacks smtp-server calls, for one app. */
export class Phases<Cs, Ts, R, U extends UserKey> {
  private readonly chains: {
    readonly connect: Effect.Effect<void, Reject.SmtpRejection, Connected<Cs, R>>
    readonly secure: Effect.Effect<void, Reject.SmtpRejection, Connected<Cs, R> | TlsSession>
    readonly auth: Effect.Effect<U["Service"], Reject.SmtpRejection, Connected<Cs, R> | Credentials>
    readonly mailFrom: Effect.Effect<void, Reject.SmtpRejection, InTransaction<Cs, Ts, R> | MailFrom>
    readonly rcptTo: Effect.Effect<void, Reject.SmtpRejection, InTransaction<Cs, Ts, R> | RcptTo>
    readonly data: Effect.Effect<void, DataError, InTransaction<Cs, Ts, R> | Message>
    readonly close: Effect.Effect<void, Reject.SmtpRejection, Connected<Cs, R>>
  }
  private readonly guardPolicy: MessageGuard.Policy
  private readonly app: SmtpApp<Cs, Ts, R, U>
  /** Sets the client's reverse-DNS name, with the `reverseLookup` setting. */
  private readonly lookup: ((record: ConnectionRecord<Cs, Ts, R>) => Effect.Effect<void>) | undefined
  private readonly settings: Settings
  private readonly runner: PhaseRunner<R>
  private readonly state: SessionState<Cs, Ts, R>
  private readonly registry: Registry<Cs, Ts, R>
  private readonly deadlines: Deadlines
  private readonly telemetry: Telemetry
  private readonly recordOf: (session: SMTPServerSession) => ConnectionRecord<Cs, Ts, R>
  private readonly run: (effect: Effect.Effect<void>) => Fiber.Fiber<void>
  private readonly observer: Observer | undefined
  readonly mailFrom: (address: SMTPServerAddress, session: SMTPServerSession, done: Done) => void
  readonly rcptTo: (address: SMTPServerAddress, session: SMTPServerSession, done: Done) => void

  constructor(deps: {
    readonly app: SmtpApp<Cs, Ts, R, U>
    /** Names the client by reverse DNS, with the `reverseLookup` setting. */
    readonly lookup: ((record: ConnectionRecord<Cs, Ts, R>) => Effect.Effect<void>) | undefined
    readonly settings: Settings
    readonly runner: PhaseRunner<R>
    readonly state: SessionState<Cs, Ts, R>
    readonly registry: Registry<Cs, Ts, R>
    readonly deadlines: Deadlines
    readonly telemetry: Telemetry
    readonly recordOf: (session: SMTPServerSession) => ConnectionRecord<Cs, Ts, R>
    readonly run: (effect: Effect.Effect<void>) => Fiber.Fiber<void>
    readonly observer: Observer | undefined
  }) {
    const { app, settings } = deps
    this.app = app
    this.settings = settings
    this.runner = deps.runner
    this.state = deps.state
    this.registry = deps.registry
    this.deadlines = deps.deadlines
    this.telemetry = deps.telemetry
    this.recordOf = deps.recordOf
    this.run = deps.run
    this.observer = deps.observer
    // Each chain is composed once: its middleware functions run here, the Effects they return per command.
    const accept = Effect.void
    this.chains = {
      connect: compose(app.connect, accept),
      secure: compose(app.secure, accept),
      auth: compose(app.auth, endOfAuth),
      mailFrom: compose(app.mailFrom, accept),
      rcptTo: compose(app.rcptTo, accept),
      data: compose(app.data, accept),
      close: composeAll(app.close, accept)
    }
    this.guardPolicy = { bareLineEndings: settings.bareLineEndings, nulBytes: settings.nulBytes, maxLineLength: settings.maxLineLength }
    const extraMail = new Set(settings.extraMailParameters.map((name) => name.toUpperCase()))
    const extraRcpt = new Set(settings.extraRcptParameters.map((name) => name.toUpperCase()))
    this.mailFrom = this.transactionPhase(
      "mailFrom",
      app.mailFrom.length === 0,
      this.chains.mailFrom,
      MailFrom,
      (address) => decodeMailFrom(address, extraMail),
      (envelope, sender) => ({ ...envelope, mailFrom: Option.some(sender) })
    )
    this.rcptTo = this.transactionPhase(
      "rcptTo",
      app.rcptTo.length === 0,
      this.chains.rcptTo,
      RcptTo,
      (address, session) => decodeRcptTo(address, session.envelope.smtpUtf8 === true, extraRcpt),
      (envelope, recipient) => ({ ...envelope, rcptTo: [...envelope.rcptTo, recipient] })
    )
    this.lookup = deps.lookup
  }

  /** Answers smtp-server: with the failure's reply, or accepting, in the words a middleware chose (`Accept`). */
  private answer(record: ConnectionRecord<Cs, Ts, R>, done: Done) {
    return (exit: Exit.Exit<unknown, DataError>, reply: SmtpReply | undefined): void => {
      if (Exit.isFailure(exit) || reply === undefined) return replyTo(done)(exit)
      record.seen.queueId = reply.queueId
      record.connection.acceptWith(reply, () => done(null))
    }
  }

  /** Looks up the client's name (with `reverseLookup`), builds the connection state and runs the connect chain. */
  readonly connect = (session: SMTPServerSession, done: Done): void => {
    const record = this.recordOf(session)
    record.connected = true
    this.telemetry.opened(record)
    const lookup = this.lookup
    if (lookup === undefined && record.state !== undefined && this.app.connect.length === 0) return done(null)
    const state = record.state ?? this.state.build(record)
    const inputs = lookup === undefined ? state : Effect.andThen(lookup(record), Effect.isEffect(state) ? state : Effect.succeed(state))
    this.runner.run(record, "connect", inputs, this.chains.connect, replyTo(done))
  }

  /** The close chain, with `state`, for `session` (`record`'s, or the proxy's it had before XCLIENT); failures are logged. */
  private readonly ended = (
    record: ConnectionRecord<Cs, Ts, R>,
    state: ConnectionRecord<Cs, Ts, R>["state"],
    session: { readonly id: string; readonly remoteAddress: string; readonly remotePort: number } = record.session
  ): Effect.Effect<void> => {
    if (this.app.close.length === 0 || state === undefined) return Effect.void
    const close = () => Effect.setContext(this.chains.close, this.runner.context(record, "close", state))
    return this.telemetry.traced(record, "close", close, session).pipe(
      Effect.timeoutOrElse({ duration: this.settings.phaseTimeouts.close, orElse: () => Effect.fail(Reject.timedOut) }),
      Effect.catchCause((cause) => this.telemetry.closeFailed(cause)),
      Effect.annotateLogs({ sessionId: session.id, remoteAddress: session.remoteAddress, phase: "close" })
    )
  }

  /** XCLIENT is about to hand the session over: the proxy's session as it is now, for its close phase. */
  readonly handingOver = (record: ConnectionRecord<Cs, Ts, R>): void => {
    record.handedFrom = snapshot(record)
  }

  /** smtp-server forgets a login at STARTTLS (RFC 3207) and at XCLIENT: the app's user goes too. */
  readonly loggedOut = (record: ConnectionRecord<Cs, Ts, R>): void => {
    if (record.anonymous !== undefined) record.state = record.anonymous
    record.anonymous = undefined
  }

  /**
   * After XCLIENT. smtp-server's login is the one that counts: if XCLIENT logged the user out, the app's user goes
   * too. When it gave the session another client (ADDR), the session starts over: the proxy's session gets its
   * close phase (whole, even if the connection drops), then the client its name (reverse lookup, or `[address]`,
   * unless XCLIENT gave one) and its connect phase, before its greeting. The connection state stays.
   */
  readonly proxied = (
    record: ConnectionRecord<Cs, Ts, R>,
    handover: "none" | "named" | "unnamed",
    answer: (rejection: Reject.SmtpRejection | undefined) => void
  ): void => {
    const from = record.handedFrom
    const proxyState = record.state
    record.handedFrom = undefined
    if (!record.session.user) this.loggedOut(record)
    const state = record.state
    if (handover === "none" || from === undefined || state === undefined || from.remoteAddress === record.session.remoteAddress) {
      return answer(undefined)
    }
    if (handover === "unnamed") record.connection.named(`[${record.session.remoteAddress}]`)
    // Until the client's connect phase starts, a close would have no connect to pair with.
    record.connected = false
    // The proxy's session as it was, whatever happens to the connection meanwhile.
    const asProxy = proxyState === undefined ? proxyState : Context.add(proxyState, SmtpSession.SmtpSession, SmtpSession.make(from.id, () => from))
    const proxySession = this.ended(record, asProxy, from).pipe(
      Effect.ensuring(Effect.sync(() => record.annotations = {})),
      Effect.uninterruptible
    )
    const lookup = handover === "unnamed" && this.lookup !== undefined ? this.lookup(record) : Effect.void
    const ready = Effect.sync(() => {
      record.connected = true
      return state
    })
    this.runner.run(record, "connect", Effect.andThen(Effect.andThen(proxySession, lookup), ready), this.chains.connect, (exit) =>
      answer(Exit.isSuccess(exit) ? undefined : rejectionFor(exit.cause)))
  }

  readonly secure = (session: SMTPServerSession, done: Done): void => {
    if (this.app.secure.length === 0) return done(null)
    const record = this.recordOf(session)
    const tls = snapshot(record).tls
    const inputs = record.state === undefined || Option.isNone(tls)
      ? Effect.fail(Reject.internalError)
      : Context.add(record.state, TlsSession, tls.value)
    this.runner.run(record, "secure", inputs, this.chains.secure, replyTo(done))
  }

  /** A failure is answered later with every attempt, and the connection is closed at the limit. */
  private authFailed(record: ConnectionRecord<Cs, Ts, R>, username: string, rejection: Reject.SmtpRejection) {
    return Effect.suspend(() => {
      const failures = ++record.authFailures
      const verdict = failures >= this.settings.maxAuthFailures ? Reject.tooManyAuthFailures : rejection
      return Effect.andThen(Effect.sleep(Duration.times(this.settings.authFailureDelay, failures)), Effect.fail(verdict))
    })
  }

  /** An accepted AUTH adds the app's user to the connection's services. */
  readonly auth = (
    auth: SMTPServerAuthentication,
    session: SMTPServerSession,
    done: (error: ReplyError | null, response?: { user: string }) => void
  ): void => {
    const user = this.app.user
    const record = this.recordOf(session)
    const method = auth.method
    if (method === "XCLIENT") return void setImmediate(done, replyError(Reject.xclientLogin))
    if ((method !== "PLAIN" && method !== "LOGIN") || !this.settings.authMethods.includes(method) || user === undefined) {
      return void setImmediate(done, replyError(Reject.unknownAuthMechanism))
    }
    const username = auth.username ?? ""
    record.seen.attempt = username
    const credentials = Credentials.of({ method, username, password: Redacted.make(auth.password ?? "") })
    const state = record.state
    this.runner.run(
      record,
      "auth",
      state === undefined ? Effect.fail(Reject.internalError) : Context.add(state, Credentials, credentials),
      Effect.catch(this.chains.auth, (rejection) => this.authFailed(record, username, rejection)),
      (exit) => {
        if (Exit.isFailure(exit)) return done(replyFor(exit.cause))
        if (record.state !== undefined) {
          record.anonymous = record.state
          record.state = Context.add(record.state, user, exit.value)
        }
        done(null, { user: username })
      }
    )
  }

  /** Runs a phase of the current transaction and records what it accepted in the envelope. */
  private transactionPhase<Input, Key>(
    phase: "mailFrom" | "rcptTo",
    empty: boolean,
    chain: Effect.Effect<void, Reject.SmtpRejection, InTransaction<Cs, Ts, R> | Key>,
    key: Context.Key<Key, Input>,
    decode: (address: SMTPServerAddress, session: SMTPServerSession) => Result.Result<Input, Reject.SmtpRejection>,
    record: (envelope: SmtpTransaction.State, input: Input) => SmtpTransaction.State
  ) {
    return (address: SMTPServerAddress, session: SMTPServerSession, done: Done): void => {
      const connection = this.recordOf(session)
      const decoded = decode(address, session)
      if (Result.isFailure(decoded)) return void setImmediate(done, replyError(decoded.failure))
      const input = decoded.success
      const transaction = this.state.transactionOf(connection)
      // A phase without middleware accepts: with its transaction open already, there is nothing to run.
      if (empty && !Effect.isEffect(transaction)) {
        MutableRef.update(transaction.ref.ref, (envelope) => record(envelope, input))
        return done(null)
      }
      const withInput = (transaction: Transaction<Cs, Ts, R>) => Context.add(transaction.context, key, input)
      this.runner.run(
        connection,
        phase,
        Effect.isEffect(transaction) ? Effect.map(transaction, withInput) : withInput(transaction),
        chain,
        (exit, reply) => {
          // Accepted: the envelope records it before the reply lets the client go on.
          const current = connection.transaction
          if (Exit.isSuccess(exit) && current !== undefined) MutableRef.update(current.ref.ref, (envelope) => record(envelope, input))
          this.answer(connection, done)(exit, reply)
        }
      )
    }
  }

  readonly data = (stream: SMTPServerDataStream, session: SMTPServerSession, done: Done): void => {
    const record = this.recordOf(session)
    record.inData = true
    const cancel = this.deadlines.message(stream, () => {
      // A message that arrived whole is not late, however long its handler takes to read it.
      if (stream.writableEnded) return
      record.connection.refuse(Reject.dataTimedOut)
      this.telemetry.logging.warning("message not received in time", { sessionId: session.id, remoteAddress: session.remoteAddress })
    })
    stream.once("end", cancel)
    stream.once("close", cancel)
    // Every byte passes the guard, read by the handler or drained.
    const guard = new MessageGuard.MessageGuard(this.guardPolicy)
    // The verdict on the content wins over the handler's, and it is known only once all of it was read. A message
    // over the limit is never accepted: it gets the handler's own rejection (its words for MessageTooLarge, say),
    // or 552 5.3.4.
    const answer = (exit: Exit.Exit<unknown, DataError>, reply: SmtpReply | undefined) =>
      MessageBody.drain(stream, guard, () => {
        record.inData = false
        record.delivering = undefined
        this.telemetry.message(record, stream.byteLength)
        const own = ownRejection(exit, guard.verdict)
        const verdict = !stream.writableEnded
          // A message that did not arrive whole (the client left, a timeout) is never accepted, whatever was decided.
          ? Reject.readFailed
          : stream.sizeExceeded
          ? own ?? Reject.tooBig
          : guard.verdict
        if (verdict === undefined) return this.answer(record, done)(exit, reply)
        record.seen.by = verdict === own ? "app" : "engine"
        done(replyError(verdict))
      })
    // Without data middleware, the message only passes the guard and the size limit: no transaction, no fiber.
    if (this.app.data.length === 0) return answer(Exit.void, undefined)
    const body = MessageBody.fromReadable(stream, this.settings.maxMessageSize, guard)
    // DATA comes after MAIL and RCPT were accepted (smtp-server sees to it): the envelope has both.
    const withMessage = (transaction: Transaction<Cs, Ts, R>) => {
      const envelope = SmtpTransaction.envelopeOf(MutableRef.get(transaction.ref.ref))
      return Option.isSome(envelope)
        ? Context.add(transaction.context, Message, Message.of({ envelope: envelope.value, stream: body }))
        : Effect.die(new Error("DATA without a sender and a recipient"))
    }
    const start = (): void => {
      stream.off("readable", start)
      stream.off("close", start)
      const transaction = this.state.transactionOf(record)
      // A transaction with state of its own releases it before the reply; one without has nothing to release.
      const scoped = Effect.isEffect(transaction) || transaction.scope !== undefined
      const fiber = this.runner.run(
        record,
        "data",
        Effect.isEffect(transaction)
          ? Effect.flatMap(transaction, (opened) => {
            const ready = withMessage(opened)
            return Effect.isEffect(ready) ? ready : Effect.succeed(ready)
          })
          : withMessage(transaction),
        scoped ? Effect.ensuring(this.chains.data, Effect.suspend(() => this.state.endTransaction(record) ?? Effect.void)) : this.chains.data,
        (exit, reply) => {
          if (!scoped) this.state.endTransaction(record)
          answer(exit, reply)
        }
      )
      if (fiber !== undefined && record.inData) record.delivering = { fiber, message: stream }
    }
    // The handler starts with the first bytes of the message (or its end, or the client leaving): before them
    // it could only wait, and every wait costs a suspension of its fiber.
    stream.on("readable", start)
    stream.on("close", start)
  }

  /** The connection is gone: its phases are interrupted (a message received whole is stored), then close runs. */
  readonly close = (session: SMTPServerSession): void => {
    const record = this.recordOf(session)
    const delivering = record.delivering
    const finishing = delivering !== undefined && delivering.message.writableEnded ? delivering.fiber : undefined
    // It keeps its client's connection slots until it is done (the client's retry may bring it twice, as with any MTA).
    if (finishing !== undefined) this.registry.adopt(finishing, record.connection.client)
    const ended = this.ended
    const closing = Effect.gen(function*() {
      record.snapshot = undefined
      yield* Fiber.interruptAll([...record.fibers].filter((fiber) => fiber !== finishing))
      if (finishing !== undefined) yield* Fiber.await(finishing)
      // Every connection whose state was built gets its close phase; one gone before its greeting has none.
      if (record.connected) yield* ended(record, record.state)
    }).pipe(
      Effect.ensuring(Effect.suspend(() => this.state.endTransaction(record) ?? Effect.void)),
      Effect.ensuring(Scope.close(record.scope, Exit.void)),
      Effect.ensuring(Effect.sync(() => {
        this.telemetry.closed(record)
        this.observer?.sessionEnded(session.id, snapshot(record), record.state, record.seen.transcript?.lines ?? [])
        this.registry.closed(record)
      }))
    )
    this.run(closing)
  }
}
