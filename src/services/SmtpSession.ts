/**
 * The connection a phase runs for.
 *
 * One `SmtpSession` exists per connection, from the greeting to the close. Its
 * state lives in a Ref that the adapter refreshes before each phase runs, so a
 * handler reads a consistent snapshot: addresses, TLS, HELO name, the opening
 * command, the authenticated user name and how many transactions the
 * connection has started.
 */
import { Context, Effect, Option, Ref } from "effect"

/** TLS details of a secured connection. */
export interface Tls {
  readonly protocol: string
  readonly cipher: string
  /** The server name the client asked for with SNI. */
  readonly servername: Option.Option<string>
}

/** A snapshot of the connection. */
export interface State {
  readonly id: string
  readonly localAddress: string
  readonly localPort: number
  readonly remoteAddress: string
  readonly remotePort: number
  /** Reverse-resolved host name, or the address as an `[ip]` literal. */
  readonly clientHostname: string
  readonly secure: boolean
  readonly tls: Option.Option<Tls>
  /** The name the client gave with HELO, EHLO or LHLO. */
  readonly heloName: Option.Option<string>
  readonly openingCommand: Option.Option<"HELO" | "EHLO" | "LHLO">
  /** `SMTP`, `ESMTP`, `ESMTPS`, `ESMTPSA`…: the protocol for a Received field. */
  readonly transmissionType: string
  /** The user name of a successful AUTH. */
  readonly username: Option.Option<string>
  /** Mail transactions started on this connection. */
  readonly transactions: number
}

/** The current connection. */
export class SmtpSession extends Context.Service<SmtpSession, {
  readonly id: string
  readonly state: Effect.Effect<State>
}>()("effect-smtp/SmtpSession") {
  /** The current snapshot. */
  static readonly current: Effect.Effect<State, never, SmtpSession> = SmtpSession.use((s) => s.state)
}

/** A session service and the Ref behind it (the adapter and the test kit write it). */
export const make = (initial: State): { readonly service: SmtpSession["Service"]; readonly ref: Ref.Ref<State> } => {
  const ref = Ref.makeUnsafe(initial)
  return { service: SmtpSession.of({ id: initial.id, state: Ref.get(ref) }), ref }
}
