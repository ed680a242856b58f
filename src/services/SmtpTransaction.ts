/**
 * The mail transaction a phase runs in.
 *
 * A transaction opens with MAIL FROM and ends after DATA, on RSET, on a new
 * HELO/EHLO or STARTTLS, or when the connection closes, as in smtp-server.
 * It is numbered when MAIL FROM is accepted: the first of a connection is 1.
 * `SmtpTransaction.current` is its state so far (the sender once MAIL FROM
 * was accepted, the recipients accepted so far), in the mail from, rcpt to
 * and data phases; the data phase's `Message` carries the whole `Envelope`.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import type { NonEmptyReadonlyArray } from "effect/Array"
import type { MailFromAddress, RcptToAddress } from "./SmtpAddress.ts"

/** The transaction so far. */
export interface State {
  /** Which transaction of the connection this is, from 1. */
  readonly id: number
  /** Set once MAIL FROM was accepted. */
  readonly mailFrom: Option.Option<MailFromAddress>
  /** The recipients accepted so far, in order. */
  readonly rcptTo: ReadonlyArray<RcptToAddress>
}

/** The envelope of a message: what DATA has. */
export interface Envelope {
  /** Which transaction of the connection this is, from 1. */
  readonly id: number
  readonly mailFrom: MailFromAddress
  /** The recipients accepted, in order. */
  readonly rcptTo: NonEmptyReadonlyArray<RcptToAddress>
}

/** The current mail transaction. */
export class SmtpTransaction extends Context.Service<SmtpTransaction, {
  readonly state: Effect.Effect<State>
}>()("effect-smtp/SmtpTransaction") {
  /** The transaction so far. */
  static readonly current: Effect.Effect<State, never, SmtpTransaction> = SmtpTransaction.use((t) => t.state)
}

/** A transaction service and the Ref behind it (the adapter writes it). */
export const make = (id: number): { readonly service: SmtpTransaction["Service"]; readonly ref: Ref.Ref<State> } => {
  const ref = Ref.makeUnsafe<State>({ id, mailFrom: Option.none(), rcptTo: [] })
  return { service: SmtpTransaction.of({ state: Ref.get(ref) }), ref }
}

/** The envelope of `state`, if it has a sender and a recipient. */
export const envelopeOf = (state: State): Option.Option<Envelope> => {
  const [first, ...rest] = state.rcptTo
  return Option.isSome(state.mailFrom) && first !== undefined
    ? Option.some({ id: state.id, mailFrom: state.mailFrom.value, rcptTo: [first, ...rest] })
    : Option.none()
}
