/**
 * An SMTP app: the middleware of each phase and the app's own state.
 *
 * Phases, in the order a connection meets them: connect, secure (TLS is up),
 * auth, mail from, rcpt to, data, close. Each is a chain of around-middleware
 * run in registration order; for every phase but auth, the end of the chain
 * accepts, and for auth it rejects (`535 5.7.8`): some middleware must accept
 * the credentials by returning without calling `next`.
 *
 * A middleware's error type must be `SmtpRejection`: anything else has to be
 * mapped (to a rejection, or with `Effect.orDie` to a 451) before it compiles.
 * Its requirements, less the services its phase provides, become the app's
 * requirements, which the server Layer must be given.
 *
 * Plugins are plain functions from app to app; every combinator here is one.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Pipeable from "effect/Pipeable"
import type * as Scope from "effect/Scope"
import { pipeArguments } from "effect/Pipeable"
import type { Credentials, MailFrom, Message, RcptTo } from "../services/PhaseInput.ts"
import type { SmtpSession } from "../services/SmtpSession.ts"
import type { SmtpTransaction } from "../services/SmtpTransaction.ts"
import type { Middleware } from "./Middleware.ts"
import * as Reject from "./Reject.ts"

/** The names of the phases. */
export type Phase = "connect" | "secure" | "auth" | "mailFrom" | "rcptTo" | "data" | "close"

/** An app whose connections carry the services `Cs`, whose transactions carry `Ts`, and which needs `R`. */
export interface SmtpApp<in out Cs, in out Ts, out R> extends Pipeable.Pipeable {
  readonly connect: ReadonlyArray<Middleware<void, Reject.SmtpRejection, SmtpSession | Cs | R>>
  readonly secure: ReadonlyArray<Middleware<void, Reject.SmtpRejection, SmtpSession | Cs | R>>
  readonly auth: ReadonlyArray<Middleware<void, Reject.SmtpRejection, SmtpSession | Cs | Credentials | R>>
  readonly mailFrom: ReadonlyArray<Middleware<void, Reject.SmtpRejection, SmtpSession | Cs | SmtpTransaction | Ts | MailFrom | R>>
  readonly rcptTo: ReadonlyArray<Middleware<void, Reject.SmtpRejection, SmtpSession | Cs | SmtpTransaction | Ts | RcptTo | R>>
  readonly data: ReadonlyArray<Middleware<void, Reject.SmtpRejection, SmtpSession | Cs | SmtpTransaction | Ts | Message | R>>
  readonly close: ReadonlyArray<Middleware<void, Reject.SmtpRejection, SmtpSession | Cs | R>>
  /** Builds the connection state into the connection's scope. */
  readonly connectionState: StateBuilder<SmtpSession, Cs, R>
  /** Builds the transaction state into the transaction's scope. */
  readonly transactionState: StateBuilder<SmtpSession | SmtpTransaction | Cs, Ts, R>
}

/** Builds state services from the services around them, into a scope that releases them. */
export interface StateBuilder<In, Out, R> {
  (around: Context.Context<In>, scope: Scope.Scope): Effect.Effect<Context.Context<Out>, Reject.SmtpRejection, R>
}

const noState = (): Effect.Effect<Context.Context<never>> => Effect.succeed(Context.empty())

const addState = <In, Prev, Out, RIn, R0>(
  prev: StateBuilder<In, Prev, R0>,
  layer: Layer.Layer<Out, Reject.SmtpRejection, RIn>
): StateBuilder<In, Prev | Out, R0 | Exclude<RIn, In | Prev>> =>
(around, scope) =>
  Effect.flatMap(prev(around, scope), (previous) =>
    Layer.buildWithScope(layer, scope).pipe(
      Effect.provideContext(Context.merge(around, previous)),
      Effect.map((added) => Context.merge(previous, added))
    ))

/**
 * States that `middleware` needs nothing outside `Exclude<R, P> | P`: the services its phase provides (`P`) and
 * the rest, which become the app's requirements. True of every `R`, but TypeScript cannot see it for a generic one.
 */
function splitsInto<P, E extends Reject.SmtpRejection, R>(
  middleware: Middleware<void, E, R>
): asserts middleware is Middleware<void, E, R> & Middleware<void, E, Exclude<R, P> | P> {
  void middleware
}

type Fields<Cs, Ts, R> = Omit<SmtpApp<Cs, Ts, R>, "pipe">

const build = <Cs, Ts, R>(fields: Fields<Cs, Ts, R>): SmtpApp<Cs, Ts, R> => ({
  ...fields,
  pipe() {
    return pipeArguments(this, arguments)
  }
})

/** An app with no middleware: it accepts every command except AUTH. */
export const empty: SmtpApp<never, never, never> = build({
  connect: [],
  secure: [],
  auth: [],
  mailFrom: [],
  rcptTo: [],
  data: [],
  close: [],
  connectionState: noState,
  transactionState: noState
})

/** Runs when a client connects, before the greeting. */
export const onConnect = <E extends Reject.SmtpRejection, R>(middleware: Middleware<void, E, R>) =>
<Cs, Ts, R0>(app: SmtpApp<Cs, Ts, R0>): SmtpApp<Cs, Ts, R0 | Exclude<R, SmtpSession | Cs>> => {
  splitsInto<SmtpSession | Cs, E, R>(middleware)
  return build<Cs, Ts, R0 | Exclude<R, SmtpSession | Cs>>({ ...app, connect: [...app.connect, middleware] })
}

/** Runs once TLS is established (STARTTLS or implicit TLS). */
export const onSecure = <E extends Reject.SmtpRejection, R>(middleware: Middleware<void, E, R>) =>
<Cs, Ts, R0>(app: SmtpApp<Cs, Ts, R0>): SmtpApp<Cs, Ts, R0 | Exclude<R, SmtpSession | Cs>> => {
  splitsInto<SmtpSession | Cs, E, R>(middleware)
  return build<Cs, Ts, R0 | Exclude<R, SmtpSession | Cs>>({ ...app, secure: [...app.secure, middleware] })
}

/** Checks `Credentials`; a middleware accepts by returning without running `next`. */
export const onAuth = <E extends Reject.SmtpRejection, R>(middleware: Middleware<void, E, R>) =>
<Cs, Ts, R0>(app: SmtpApp<Cs, Ts, R0>): SmtpApp<Cs, Ts, R0 | Exclude<R, SmtpSession | Cs | Credentials>> => {
  splitsInto<SmtpSession | Cs | Credentials, E, R>(middleware)
  return build<Cs, Ts, R0 | Exclude<R, SmtpSession | Cs | Credentials>>({ ...app, auth: [...app.auth, middleware] })
}

/** Checks the sender (`MailFrom`). */
export const onMailFrom = <E extends Reject.SmtpRejection, R>(middleware: Middleware<void, E, R>) =>
<Cs, Ts, R0>(
  app: SmtpApp<Cs, Ts, R0>
): SmtpApp<Cs, Ts, R0 | Exclude<R, SmtpSession | Cs | SmtpTransaction | Ts | MailFrom>> => {
  splitsInto<SmtpSession | Cs | SmtpTransaction | Ts | MailFrom, E, R>(middleware)
  return build<Cs, Ts, R0 | Exclude<R, SmtpSession | Cs | SmtpTransaction | Ts | MailFrom>>({ ...app, mailFrom: [...app.mailFrom, middleware] })
}

/** Checks one recipient (`RcptTo`). */
export const onRcptTo = <E extends Reject.SmtpRejection, R>(middleware: Middleware<void, E, R>) =>
<Cs, Ts, R0>(
  app: SmtpApp<Cs, Ts, R0>
): SmtpApp<Cs, Ts, R0 | Exclude<R, SmtpSession | Cs | SmtpTransaction | Ts | RcptTo>> => {
  splitsInto<SmtpSession | Cs | SmtpTransaction | Ts | RcptTo, E, R>(middleware)
  return build<Cs, Ts, R0 | Exclude<R, SmtpSession | Cs | SmtpTransaction | Ts | RcptTo>>({ ...app, rcptTo: [...app.rcptTo, middleware] })
}

/** Receives the message (`Message`); the reply to DATA is sent when the chain ends. */
export const onData = <E extends Reject.SmtpRejection, R>(middleware: Middleware<void, E, R>) =>
<Cs, Ts, R0>(
  app: SmtpApp<Cs, Ts, R0>
): SmtpApp<Cs, Ts, R0 | Exclude<R, SmtpSession | Cs | SmtpTransaction | Ts | Message>> => {
  splitsInto<SmtpSession | Cs | SmtpTransaction | Ts | Message, E, R>(middleware)
  return build<Cs, Ts, R0 | Exclude<R, SmtpSession | Cs | SmtpTransaction | Ts | Message>>({ ...app, data: [...app.data, middleware] })
}

/** Runs after the connection closed; there is nobody left to reply to. */
export const onClose = <E extends Reject.SmtpRejection, R>(middleware: Middleware<void, E, R>) =>
<Cs, Ts, R0>(app: SmtpApp<Cs, Ts, R0>): SmtpApp<Cs, Ts, R0 | Exclude<R, SmtpSession | Cs>> => {
  splitsInto<SmtpSession | Cs, E, R>(middleware)
  return build<Cs, Ts, R0 | Exclude<R, SmtpSession | Cs>>({ ...app, close: [...app.close, middleware] })
}

/**
 * Adds per-connection state: `layer` is built when a connection opens (it may
 * use `SmtpSession` and earlier connection state) and released when it closes.
 * Declare state before the middleware that uses it.
 */
export const withConnectionState = <Out, RIn>(layer: Layer.Layer<Out, Reject.SmtpRejection, RIn>) =>
<Cs, Ts, R0>(app: SmtpApp<Cs, Ts, R0>): SmtpApp<Cs | Out, Ts, R0 | Exclude<RIn, SmtpSession | Cs>> =>
  build<Cs | Out, Ts, R0 | Exclude<RIn, SmtpSession | Cs>>({
    ...app,
    connectionState: addState(app.connectionState, layer)
  })

/**
 * Adds per-transaction state: `layer` is built when MAIL FROM starts a
 * transaction (it may use `SmtpTransaction` and connection state) and
 * released when the transaction ends.
 */
export const withTransactionState = <Out, RIn>(layer: Layer.Layer<Out, Reject.SmtpRejection, RIn>) =>
<Cs, Ts, R0>(
  app: SmtpApp<Cs, Ts, R0>
): SmtpApp<Cs, Ts | Out, R0 | Exclude<RIn, SmtpSession | SmtpTransaction | Cs | Ts>> =>
  build<Cs, Ts | Out, R0 | Exclude<RIn, SmtpSession | SmtpTransaction | Cs | Ts>>({
    ...app,
    transactionState: addState(app.transactionState, layer)
  })
