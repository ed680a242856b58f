/**
 * The engine's connections: one record per connection, and the registry that
 * counts them against the connection limits and knows when every one of them
 * has finished (shutdown waits for that).
 *
 * A record lives from the moment smtp-server takes the connection until its
 * close phase has run. A delivery whose client left after sending the whole
 * message (an orphan) still counts as the connection it was, for the server's
 * limit and for its client's, until it finishes.
 */
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import type * as Option from "effect/Option"
import type * as Ref from "effect/Ref"
import type * as Scope from "effect/Scope"
import type * as Tracer from "effect/Tracer"
import type { SMTPServerDataStream, SMTPServerSession } from "smtp-server"
import type { PhaseName } from "../../layers/SmtpMetrics.ts"
import type { PhaseReply } from "../../phases/Accept.ts"
import * as Reject from "../../phases/Reject.ts"
import type { Phase } from "../../phases/SmtpApp.ts"
import type * as SmtpSession from "../../services/SmtpSession.ts"
import type * as SmtpTransaction from "../../services/SmtpTransaction.ts"
import type { Connection } from "./Hooks.ts"
import type * as Transcript from "./Transcript.ts"

/** An open transaction: its envelope object in smtp-server marks which one it is. */
export interface Transaction<Cs, Ts, R> {
  readonly envelope: SMTPServerSession["envelope"]
  /** Only when the app declares transaction state. */
  readonly scope: Scope.Closeable | undefined
  readonly ref: Ref.Ref<SmtpTransaction.State>
  /** Everything a transaction phase sees: the app's services, the connection's and the transaction's. */
  readonly context: Context.Context<R | SmtpSession.SmtpSession | PhaseReply | Cs | SmtpTransaction.SmtpTransaction | Ts>
}

/** A run of a phase, as telemetry follows it. */
export interface PhaseRun {
  readonly name: PhaseName
  /** When it started (for its duration), or -1 without metrics. */
  readonly start: number
  /** Its span, when tracing. */
  readonly span: Tracer.Span | undefined
}

/** What telemetry keeps for a connection. */
export interface Seen {
  /** When smtp-server made the connection ready for its greeting (a port probe gone before never is). */
  openedAt: number | undefined
  /** TLS from its first byte (an implicit TLS port): its TLS session was not a STARTTLS. */
  implicitTls: boolean
  /** The connection's span, when tracing. */
  span: Tracer.Span | undefined
  /** The run whose command is being handled, from its start to its reply. */
  run: PhaseRun | undefined
  /** Who decided the next rejection: the app's middleware, or the engine (smtp-server, the policy, a limit, the guard). */
  by: "app" | "engine"
  /** The id the data phase named the message by (`Accept.queued`). */
  queueId: string | undefined
  /** The last message's size, and the message bytes of the connection. */
  size: number
  bytes: number
  /** The user name of the AUTH being tried. */
  attempt: string | undefined
  /** The commands and replies, with the `transcript` setting. */
  readonly transcript: Transcript.Transcript | undefined
}

/** What a phase runs for: a connection, as the phase runner sees it. */
export interface PhaseHost {
  readonly session: SMTPServerSession
  /** The session as the current phase sees it, taken when a handler first asks. */
  snapshot: SmtpSession.State | undefined
  /** The phases running for the connection. */
  readonly fibers: Set<Fiber.Fiber<unknown, unknown>>
  /** From DATA until its reply: a message in flight, even before its handler starts or after it ends. */
  inData: boolean
  /** The log annotations of each phase's runs, made at the first (and again once XCLIENT changed the client). */
  annotations: { [P in Phase]?: Readonly<Record<string, unknown>> }
  readonly connection: Connection
  /** What telemetry keeps of the connection. */
  readonly seen: Seen
  readonly started: number
  readonly messages: number
}

/** What the deadlines of a connection need. */
export interface Watched {
  readonly connection: Connection
  /** Cancels the deadline of a command line that has begun; set while one is open. */
  lineDeadline: (() => void) | undefined
  /** Cancels the wait for the client to read its replies; set while it waits. */
  stalled: (() => void) | undefined
}

/** What the engine keeps for one connection. */
export interface ConnectionRecord<Cs, Ts, R> extends PhaseHost, Watched {
  readonly scope: Scope.Closeable
  /** The app's services, the connection's `SmtpSession` and `PhaseReply`. */
  readonly base: Context.Context<R | SmtpSession.SmtpSession | PhaseReply>
  /** smtp-server has run the connect phase (a client gone before its greeting never gets there). */
  connected: boolean
  /** The connection's services, once its state is built (at connect); the app's user joins them at AUTH. */
  state: Context.Context<R | SmtpSession.SmtpSession | PhaseReply | Cs> | undefined
  /** The connection's services before AUTH added the app's user: what XCLIENT hands the proxied client. */
  anonymous: Context.Context<R | SmtpSession.SmtpSession | PhaseReply | Cs> | undefined
  /** While XCLIENT hands the session over: the proxy's session, for its close phase. */
  handedFrom: SmtpSession.State | undefined
  /** The TLS client's certificate (or none), once read. */
  peerCertificate: Option.Option<SmtpSession.PeerCertificate> | undefined
  /** Transactions started (MAIL FROM accepted) and messages accepted (DATA answered 250). */
  started: number
  messages: number
  transaction: Transaction<Cs, Ts, R> | undefined
  /** Set when the server shuts down: the next command gets 421 and the connection closes. */
  draining: boolean
  authFailures: number
  /** The data handler's fiber while it runs, and its message: once the message is all here, the client leaving does not stop it. */
  delivering: { readonly fiber: Fiber.Fiber<unknown, unknown>; readonly message: SMTPServerDataStream } | undefined
}

/** True while a phase runs or a message is in flight. */
export const isBusy = (record: PhaseHost): boolean => record.fibers.size > 0 || record.inData

/** The connection limits. */
export interface Limits {
  readonly maxClients: number
  readonly maxConnectionsPerClient: number
}

/** Every connection of a server. */
export class Registry<Cs, Ts, R> {
  /** Records whose close phase has not run yet. */
  readonly open = new Set<ConnectionRecord<Cs, Ts, R>>()
  /** Deliveries of messages received whole whose client left before the reply: they finish, and shutdown waits. */
  readonly orphans = new Set<Fiber.Fiber<unknown, unknown>>()
  /** Connections smtp-server serves (sockets not closed yet). */
  connections = 0
  /** Connections, implicit TLS handshakes and orphans: what the server's limit counts. */
  private counted = 0
  private readonly perClient = new Map<string, number>()
  private readonly whenClosed: Array<() => void> = []
  private readonly limits: Limits

  constructor(limits: Limits) {
    this.limits = limits
  }

  /** The limit a new connection from `client` would break, if any. */
  limitFor(client: string): Reject.SmtpRejection | undefined {
    if (this.counted >= this.limits.maxClients) return Reject.tooManyClients
    return (this.perClient.get(client) ?? 0) >= this.limits.maxConnectionsPerClient ? Reject.tooManyFromYou : undefined
  }

  /** Counts a connection, handshake or orphan of `client` until the returned function runs (once). */
  count(client: string, connection: boolean): () => void {
    this.change(client, 1, connection)
    let counted = true
    return () => {
      if (!counted) return
      counted = false
      this.change(client, -1, connection)
    }
  }

  private change(client: string, by: 1 | -1, connection: boolean): void {
    this.counted += by
    if (connection) this.connections += by
    const count = (this.perClient.get(client) ?? 0) + by
    if (count <= 0) this.perClient.delete(client)
    else this.perClient.set(client, count)
  }

  /** Keeps `fiber`, a delivery that outlived its client, counted as its connection until it ends. */
  adopt(fiber: Fiber.Fiber<unknown, unknown>, client: string): void {
    const release = this.count(client, false)
    this.orphans.add(fiber)
    fiber.addObserver(() => {
      this.orphans.delete(fiber)
      release()
    })
  }

  /** The close phase of `record` has run. */
  closed(record: ConnectionRecord<Cs, Ts, R>): void {
    this.open.delete(record)
    if (this.open.size === 0) for (const wake of this.whenClosed.splice(0)) wake()
  }

  /** Connections with a phase running or a message in flight. */
  busy(): number {
    let count = 0
    for (const record of this.open) if (isBusy(record)) count++
    return count
  }

  /**
   * Completes once every connection's close phase has run, deliveries that
   * outlived their clients included. The listener's close can report before
   * the last socket's own close event, and so before its close phase.
   */
  readonly settled: Effect.Effect<void> = Effect.callback<void>((resume) => {
    if (this.open.size === 0) return resume(Effect.void)
    const wake = () => resume(Effect.void)
    this.whenClosed.push(wake)
    return Effect.sync(() => {
      const index = this.whenClosed.indexOf(wake)
      if (index >= 0) this.whenClosed.splice(index, 1)
    })
  })
}
