/**
 * The state a connection's phases see: the `SmtpSession` snapshot, the app's
 * connection state (built once, when the connection opens, into the
 * connection's scope) and the current transaction with its state (built when
 * MAIL opens it, released when it ends).
 *
 * Building an Effect runs nothing, so a state builder can be asked first with
 * a scope it will never touch: one that answers with a completed Effect (no
 * state declared) opens its connection or transaction synchronously, and a
 * transaction without state gets no scope of its own.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as MutableRef from "effect/MutableRef"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import type { Duplex } from "node:stream"
import * as tls from "node:tls"
import type { SMTPServerSession } from "smtp-server"
import { PhaseReply } from "../../phases/Accept.ts"
import * as Reject from "../../phases/Reject.ts"
import type { SmtpApp } from "../../phases/SmtpApp.ts"
import { phaseReply } from "../MiddlewareChain.ts"
import * as SmtpSession from "../../services/SmtpSession.ts"
import * as SmtpTransaction from "../../services/SmtpTransaction.ts"
import type { ConnectionRecord, Transaction } from "./Connections.ts"
import type { Connection } from "./Hooks.ts"
import type { Seen } from "./Connections.ts"

const optionalText = (value: string | false | null | undefined): Option.Option<string> =>
  typeof value === "string" && value !== "" ? Option.some(value) : Option.none()

const noProxyData: ReadonlyMap<string, string> = new Map()

/** What XCLIENT or XFORWARD said, as text. */
const proxyData = (data: SMTPServerSession["xClient"] | undefined): ReadonlyMap<string, string> =>
  data === undefined || data.size === 0
    ? noProxyData
    : new Map([...data].map(([key, value]) => [key, value === false ? "" : String(value)]))

const names = (fields: tls.Certificate): Readonly<Record<string, string>> =>
  Object.fromEntries(Object.entries(fields).flatMap(([key, value]) => value === undefined ? [] : [[key, typeof value === "string" ? value : value.join(", ")]]))

/** What a snapshot is taken of. */
interface Snapshotted {
  readonly session: SMTPServerSession
  readonly connection: { readonly socket: Duplex }
  readonly started: number
  readonly messages: number
  peerCertificate: Option.Option<SmtpSession.PeerCertificate> | undefined
}

/** The certificate a TLS client gave, if it gave one: read once the TLS session is up, kept after the socket closes. */
const peerCertificateOf = (record: Snapshotted): Option.Option<SmtpSession.PeerCertificate> => {
  if (record.peerCertificate !== undefined) return record.peerCertificate
  const socket = record.connection.socket
  if (!(socket instanceof tls.TLSSocket)) return Option.none()
  // Node gives an empty object without a certificate, and null once the socket is destroyed.
  const certificate: tls.PeerCertificate | null = socket.getPeerCertificate()
  if (certificate === null) return Option.none()
  return record.peerCertificate = certificate.subject === undefined ? Option.none() : Option.some({
    subject: names(certificate.subject),
    issuer: names(certificate.issuer),
    fingerprint256: certificate.fingerprint256,
    validFrom: certificate.valid_from,
    validTo: certificate.valid_to,
    verified: socket.authorized
  })
}

/** The session as a phase sees it. */
export const snapshot = (record: Snapshotted): SmtpSession.State => {
  const session = record.session
  return {
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
        servername: optionalText(session.servername),
        peerCertificate: peerCertificateOf(record)
      })
      : Option.none(),
    heloName: optionalText(session.hostNameAppearsAs),
    openingCommand: session.openingCommand === "HELO" || session.openingCommand === "EHLO" ||
        session.openingCommand === "LHLO"
      ? Option.some(session.openingCommand)
      : Option.none(),
    transmissionType: session.transmissionType ?? "SMTP",
    username: typeof session.user === "string" ? Option.some(session.user) : Option.none(),
    xClient: proxyData(session.xClient),
    xForward: proxyData(session.xForward),
    transactions: record.started,
    messages: record.messages
  }
}

/** `around` with `added` on top; `Context.merge` copies its first argument whole, so an empty `added` goes first. */
export const withState = <A, B>(around: Context.Context<A>, added: Context.Context<B>): Context.Context<A | B> =>
  added.mapUnsafe.size === 0 ? Context.merge(added, around) : Context.merge(around, added)

/** An Effect that has completed already is its own Exit. */
const isDone = <A, E, R>(self: Effect.Effect<A, E, R>): self is Exit.Exit<A, E> => Exit.isExit(self)

/** The state a builder built at once, if it did. */
const builtAtOnce = <A, E, R>(built: Effect.Effect<A, E, R>): A | undefined =>
  isDone(built) && Exit.isSuccess(built) ? built.value : undefined

/** Told what the app saw of each connection and transaction as it ends: the test kit's records. */
export interface Observer {
  readonly transactionEnded: (sessionId: string, state: SmtpTransaction.State) => void
  /** After the close phase: the session's last state, the connection's services as that phase had them, and its transcript. */
  readonly sessionEnded: (
    sessionId: string,
    state: SmtpSession.State,
    services: Context.Context<never> | undefined,
    transcript: ReadonlyArray<SmtpSession.TranscriptLine>
  ) => void
}

/** The state of an app's connections and transactions. */
export class SessionState<Cs, Ts, R> {
  private readonly app: Pick<SmtpApp<Cs, Ts, R>, "connectionState" | "transactionState">
  private readonly services: Context.Context<R>
  private readonly serverScope: Scope.Scope
  /** A scope no builder asked first ever touches. */
  private readonly unused = Scope.makeUnsafe()
  /**
   * What each builder built at once, or `false`: asked at the first connection and transaction only. An app's
   * builder either declares no state (it answers at once, always with the same empty state) or builds Layers
   * into the scope it is given (never at once).
   */
  private connectionAtOnce: Context.Context<Cs> | false | undefined = undefined
  private transactionAtOnce: Context.Context<Ts> | false | undefined = undefined

  private readonly observer: Observer | undefined

  constructor(
    app: Pick<SmtpApp<Cs, Ts, R>, "connectionState" | "transactionState">,
    services: Context.Context<R>,
    serverScope: Scope.Scope,
    observer: Observer | undefined
  ) {
    this.app = app
    this.services = services
    this.serverScope = serverScope
    this.observer = observer
  }

  /** A new connection's record; without connection state, its state is there at once. */
  open(connection: Connection, draining: boolean, seen: Seen): ConnectionRecord<Cs, Ts, R> {
    const session = connection.session
    const current = SmtpSession.make(session.id, () => record.snapshot ??= snapshot(record), seen.transcript?.lines)
    const record: ConnectionRecord<Cs, Ts, R> = {
      connection,
      session,
      seen,
      scope: Scope.forkUnsafe(this.serverScope),
      base: Context.add(this.services, SmtpSession.SmtpSession, current).pipe(Context.add(PhaseReply, phaseReply)),
      snapshot: undefined,
      fibers: new Set(),
      connected: false,
      state: undefined,
      anonymous: undefined,
      handedFrom: undefined,
      peerCertificate: undefined,
      started: 0,
      messages: 0,
      transaction: undefined,
      draining,
      authFailures: 0,
      inData: false,
      annotations: {},
      delivering: undefined,
      lineDeadline: undefined,
      stalled: undefined
    }
    const state = this.connectionAtOnce ??= builtAtOnce(this.app.connectionState(record.base, this.unused)) ?? false
    if (state !== false) record.state = withState(record.base, state)
    return record
  }

  /** Builds the connection state into the connection's scope (at connect). */
  build(record: ConnectionRecord<Cs, Ts, R>): Effect.Effect<Context.Context<R | SmtpSession.SmtpSession | PhaseReply | Cs>, Reject.SmtpRejection, R> {
    return Effect.map(this.app.connectionState(record.base, record.scope), (state) => record.state = withState(record.base, state))
  }

  /** Ends the connection's transaction; what is left to run, if its state has finalizers. */
  endTransaction(record: ConnectionRecord<Cs, Ts, R>): Effect.Effect<void> | undefined {
    const transaction = record.transaction
    if (transaction === undefined) return undefined
    record.transaction = undefined
    this.observer?.transactionEnded(record.session.id, MutableRef.get(transaction.ref.ref))
    return transaction.scope === undefined ? undefined : Scope.closeUnsafe(transaction.scope, Exit.void)
  }

  /**
   * The connection's current transaction, opened if the last one has ended:
   * smtp-server replaces the envelope object whenever a transaction ends
   * (RSET, HELO, STARTTLS, after DATA).
   */
  transactionOf(
    record: ConnectionRecord<Cs, Ts, R>
  ): Transaction<Cs, Ts, R> | Effect.Effect<Transaction<Cs, Ts, R>, Reject.SmtpRejection, R> {
    const current = record.transaction
    if (current !== undefined && current.envelope === record.session.envelope) return current
    const connectionState = record.state
    // Commands are read only once the connect phase has built the state.
    if (connectionState === undefined) return Effect.fail(Reject.internalError)
    const ending = this.endTransaction(record)
    // Numbered as the transaction it will be once MAIL FROM is accepted.
    const { service, ref } = SmtpTransaction.make(record.started + 1)
    const base = Context.add(connectionState, SmtpTransaction.SmtpTransaction, service)
    const envelope = record.session.envelope
    const state = this.transactionAtOnce ??= builtAtOnce(this.app.transactionState(base, this.unused)) ?? false
    if (state !== false && ending === undefined) {
      return record.transaction = { envelope, scope: undefined, ref, context: withState(base, state) }
    }
    return Effect.uninterruptible(ending ?? Effect.void).pipe(
      Effect.andThen(Effect.suspend((): Effect.Effect<Transaction<Cs, Ts, R>, Reject.SmtpRejection, R> => {
        if (state !== false) return Effect.succeed(record.transaction = { envelope, scope: undefined, ref, context: withState(base, state) })
        const scope = Scope.forkUnsafe(record.scope)
        return Effect.map(
          this.app.transactionState(base, scope),
          (added) => record.transaction = { envelope, scope, ref, context: withState(base, added) }
        )
      }))
    )
  }
}
