/**
 * An SMTP app: the middleware of each phase and the app's own state.
 *
 * Phases, in the order a connection meets them: connect, secure (TLS is up),
 * auth, mail from, rcpt to, data, close. Each is a chain of around-middleware
 * run in registration order; the end of every chain accepts, except auth's,
 * which answers `535 5.7.8`: an auth middleware accepts by succeeding with the
 * app's user, which later phases read with `Effect.serviceOption(User)`.
 *
 * A middleware's error type must be `SmtpRejection` (in the data phase, also
 * the message stream's `MessageTooLarge`): anything else has to be mapped (to
 * a rejection, or with `Effect.orDie` to a 451) before it compiles. Its
 * requirements, less the services its phase provides, become the app's
 * requirements, which the server Layer must be given.
 *
 * Plugins are plain functions from app to app; every combinator here is one,
 * and `flow` makes one plugin of several.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Pipeable from "effect/Pipeable"
import type * as Scope from "effect/Scope"
import { pipeArguments } from "effect/Pipeable"
import type { Credentials, MailFrom, Message, RcptTo, TlsSession } from "../services/PhaseInput.ts"
import type { SmtpSession } from "../services/SmtpSession.ts"
import type { SmtpTransaction } from "../services/SmtpTransaction.ts"
import type { PhaseReply } from "./Accept.ts"
import type { DataError, Middleware } from "./Middleware.ts"
import * as Reject from "./Reject.ts"

/** The names of the phases. */
export type Phase = "connect" | "secure" | "auth" | "mailFrom" | "rcptTo" | "data" | "close"

/** The key of an app's user type: a `Context.Service` class whose value an accepting auth middleware returns. */
export type UserKey = Context.Key<unknown, unknown>

/** The services every phase of a connection has. */
export type Connected<Cs> = SmtpSession | Cs
/** The services the mail from, rcpt to and data phases have besides their input. */
export type InTransaction<Cs, Ts> = SmtpSession | Cs | SmtpTransaction | Ts | PhaseReply

/**
 * An app whose connections carry the services `Cs`, whose transactions carry `Ts`, which needs `R`, and whose
 * authenticated user is the service `U` (`never` for an app without auth middleware).
 */
export interface SmtpApp<in out Cs, in out Ts, out R, in out U extends UserKey = never> extends Pipeable.Pipeable {
  readonly connect: ReadonlyArray<Middleware<void, Reject.SmtpRejection, Connected<Cs> | R>>
  readonly secure: ReadonlyArray<Middleware<void, Reject.SmtpRejection, Connected<Cs> | TlsSession | R>>
  readonly auth: ReadonlyArray<Middleware<U["Service"], Reject.SmtpRejection, Connected<Cs> | Credentials | R>>
  /** The service an accepted AUTH adds to the connection; set by the first `onAuth`. */
  readonly user: U | undefined
  readonly mailFrom: ReadonlyArray<Middleware<void, Reject.SmtpRejection, InTransaction<Cs, Ts> | MailFrom | R>>
  readonly rcptTo: ReadonlyArray<Middleware<void, Reject.SmtpRejection, InTransaction<Cs, Ts> | RcptTo | R>>
  readonly data: ReadonlyArray<Middleware<void, DataError, InTransaction<Cs, Ts> | Message | R, DataError>>
  readonly close: ReadonlyArray<Middleware<void, Reject.SmtpRejection, Connected<Cs> | R>>
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
function splitsInto<P, A, E extends N, R, N>(
  middleware: Middleware<A, E, R, N>
): asserts middleware is Middleware<A, E, R, N> & Middleware<A, E, Exclude<R, P> | P, N> {
  void middleware
}

/** Checks that an app has one user type: `app` has none yet, or it is `user`. */
function hasUser<Cs, Ts, R, U extends K, K extends UserKey>(app: SmtpApp<Cs, Ts, R, U>, user: K): asserts app is SmtpApp<Cs, Ts, R, U> & SmtpApp<Cs, Ts, R, K> {
  if (app.user !== undefined && app.user.key !== user.key) {
    throw new Error(`an app has one user type: onAuth was given ${user.key} after ${app.user.key}`)
  }
}

type Fields<Cs, Ts, R, U extends UserKey> = Omit<SmtpApp<Cs, Ts, R, U>, "pipe">

const build = <Cs, Ts, R, U extends UserKey>(fields: Fields<Cs, Ts, R, U>): SmtpApp<Cs, Ts, R, U> => ({
  ...fields,
  pipe() {
    return pipeArguments(this, arguments)
  }
})

/** An app with no middleware: it accepts every command; AUTH is not offered. */
export const empty: SmtpApp<never, never, never> = build<never, never, never, never>({
  connect: [],
  secure: [],
  auth: [],
  user: undefined,
  mailFrom: [],
  rcptTo: [],
  data: [],
  close: [],
  connectionState: noState,
  transactionState: noState
})

/** Runs when a client connects, before the greeting; the connection state is built already. */
export const onConnect = <E extends Reject.SmtpRejection, R>(middleware: Middleware<void, E, R>) =>
<Cs, Ts, R0, U extends UserKey>(app: SmtpApp<Cs, Ts, R0, U>): SmtpApp<Cs, Ts, R0 | Exclude<R, Connected<Cs>>, U> => {
  splitsInto<Connected<Cs>, void, E, R, Reject.SmtpRejection>(middleware)
  return build<Cs, Ts, R0 | Exclude<R, Connected<Cs>>, U>({ ...app, connect: [...app.connect, middleware] })
}

/** Runs once TLS is established (STARTTLS or implicit TLS), with its details (`TlsSession`). */
export const onSecure = <E extends Reject.SmtpRejection, R>(middleware: Middleware<void, E, R>) =>
<Cs, Ts, R0, U extends UserKey>(app: SmtpApp<Cs, Ts, R0, U>): SmtpApp<Cs, Ts, R0 | Exclude<R, Connected<Cs> | TlsSession>, U> => {
  splitsInto<Connected<Cs> | TlsSession, void, E, R, Reject.SmtpRejection>(middleware)
  return build<Cs, Ts, R0 | Exclude<R, Connected<Cs> | TlsSession>, U>({ ...app, secure: [...app.secure, middleware] })
}

/**
 * Checks `Credentials`. `user` is the app's user type, a `Context.Service`
 * class: a middleware accepts by succeeding with its value, rejects by failing,
 * or passes on with `next` (past the last one: `535 5.7.8`). Once accepted, the
 * user is a service of the connection: `Effect.serviceOption(user)` in any
 * later phase. Adding auth middleware offers AUTH.
 */
export const onAuth = <K extends UserKey, E extends Reject.SmtpRejection, R>(user: K, middleware: Middleware<K["Service"], E, R>) =>
<Cs, Ts, R0, U extends K>(app: SmtpApp<Cs, Ts, R0, U>): SmtpApp<Cs, Ts, R0 | Exclude<R, Connected<Cs> | Credentials>, K> => {
  splitsInto<Connected<Cs> | Credentials, K["Service"], E, R, Reject.SmtpRejection>(middleware)
  hasUser(app, user)
  return build<Cs, Ts, R0 | Exclude<R, Connected<Cs> | Credentials>, K>({ ...app, user, auth: [...app.auth, middleware] })
}

/** Checks the sender (`MailFrom`); it may word its 250 (`Accept.ok`). */
export const onMailFrom = <E extends Reject.SmtpRejection, R>(middleware: Middleware<void, E, R>) =>
<Cs, Ts, R0, U extends UserKey>(app: SmtpApp<Cs, Ts, R0, U>): SmtpApp<Cs, Ts, R0 | Exclude<R, InTransaction<Cs, Ts> | MailFrom>, U> => {
  splitsInto<InTransaction<Cs, Ts> | MailFrom, void, E, R, Reject.SmtpRejection>(middleware)
  return build<Cs, Ts, R0 | Exclude<R, InTransaction<Cs, Ts> | MailFrom>, U>({ ...app, mailFrom: [...app.mailFrom, middleware] })
}

/** Checks one recipient (`RcptTo`); it may word its 250 or 251 (`Accept.ok`, `Accept.forwarding`). */
export const onRcptTo = <E extends Reject.SmtpRejection, R>(middleware: Middleware<void, E, R>) =>
<Cs, Ts, R0, U extends UserKey>(app: SmtpApp<Cs, Ts, R0, U>): SmtpApp<Cs, Ts, R0 | Exclude<R, InTransaction<Cs, Ts> | RcptTo>, U> => {
  splitsInto<InTransaction<Cs, Ts> | RcptTo, void, E, R, Reject.SmtpRejection>(middleware)
  return build<Cs, Ts, R0 | Exclude<R, InTransaction<Cs, Ts> | RcptTo>, U>({ ...app, rcptTo: [...app.rcptTo, middleware] })
}

/** Receives the message (`Message`: its envelope and body); the reply to DATA is sent when the chain ends. */
export const onData = <E extends DataError, R>(middleware: Middleware<void, E, R, DataError>) =>
<Cs, Ts, R0, U extends UserKey>(app: SmtpApp<Cs, Ts, R0, U>): SmtpApp<Cs, Ts, R0 | Exclude<R, InTransaction<Cs, Ts> | Message>, U> => {
  splitsInto<InTransaction<Cs, Ts> | Message, void, E, R, DataError>(middleware)
  return build<Cs, Ts, R0 | Exclude<R, InTransaction<Cs, Ts> | Message>, U>({ ...app, data: [...app.data, middleware] })
}

/**
 * Runs after the connection closed, for every connection whose state was
 * built; there is nobody left to reply to. Every close middleware runs: one
 * that does not run `next` (or fails) is followed by the rest all the same,
 * so a plugin's clean-up always gets its turn.
 */
export const onClose = <E extends Reject.SmtpRejection, R>(middleware: Middleware<void, E, R>) =>
<Cs, Ts, R0, U extends UserKey>(app: SmtpApp<Cs, Ts, R0, U>): SmtpApp<Cs, Ts, R0 | Exclude<R, Connected<Cs>>, U> => {
  splitsInto<Connected<Cs>, void, E, R, Reject.SmtpRejection>(middleware)
  return build<Cs, Ts, R0 | Exclude<R, Connected<Cs>>, U>({ ...app, close: [...app.close, middleware] })
}

/**
 * Adds per-connection state: `layer` is built when a connection opens, before
 * its connect phase (it may use `SmtpSession` and earlier connection state),
 * and released when it closes. Declare state before the middleware that uses it.
 */
export const withConnectionState = <Out, RIn>(layer: Layer.Layer<Out, Reject.SmtpRejection, RIn>) =>
<Cs, Ts, R0, U extends UserKey>(app: SmtpApp<Cs, Ts, R0, U>): SmtpApp<Cs | Out, Ts, R0 | Exclude<RIn, SmtpSession | Cs>, U> =>
  build<Cs | Out, Ts, R0 | Exclude<RIn, SmtpSession | Cs>, U>({ ...app, connectionState: addState(app.connectionState, layer) })

/**
 * Adds per-transaction state: `layer` is built when MAIL FROM starts a
 * transaction (it may use `SmtpTransaction` and connection state) and
 * released when the transaction ends.
 */
export const withTransactionState = <Out, RIn>(layer: Layer.Layer<Out, Reject.SmtpRejection, RIn>) =>
<Cs, Ts, R0, U extends UserKey>(
  app: SmtpApp<Cs, Ts, R0, U>
): SmtpApp<Cs, Ts | Out, R0 | Exclude<RIn, SmtpSession | SmtpTransaction | Cs | Ts>, U> =>
  build<Cs, Ts | Out, R0 | Exclude<RIn, SmtpSession | SmtpTransaction | Cs | Ts>, U>({ ...app, transactionState: addState(app.transactionState, layer) })
