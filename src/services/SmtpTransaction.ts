/**
 * The mail transaction a phase runs in.
 *
 * A transaction starts with MAIL FROM and ends after DATA, on RSET, on a new
 * HELO/EHLO or STARTTLS, or when the connection closes, as in smtp-server.
 * `SmtpTransaction` holds its envelope: the decoded sender with its
 * parameters, and the recipients accepted so far. It is available to the
 * mail from, rcpt to and data phases.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import type { MailFromAddress, RcptToAddress } from "./SmtpAddress.ts"

/** The envelope of the current message. */
export interface Envelope {
  /** Which transaction of the connection this is, from 1. */
  readonly id: number
  /** Set once MAIL FROM was accepted. */
  readonly mailFrom: Option.Option<MailFromAddress>
  /** The recipients accepted so far, in order. */
  readonly rcptTo: ReadonlyArray<RcptToAddress>
}

/** The current mail transaction. */
export class SmtpTransaction extends Context.Service<SmtpTransaction, {
  readonly envelope: Effect.Effect<Envelope>
}>()("effect-smtp/SmtpTransaction") {
  /** The current envelope. */
  static readonly envelope: Effect.Effect<Envelope, never, SmtpTransaction> = SmtpTransaction.use((t) => t.envelope)
}

/** A transaction service and the Ref behind it (the adapter writes it). */
export const make = (id: number): { readonly service: SmtpTransaction["Service"]; readonly ref: Ref.Ref<Envelope> } => {
  const ref = Ref.makeUnsafe<Envelope>({ id, mailFrom: Option.none(), rcptTo: [] })
  return { service: SmtpTransaction.of({ envelope: Ref.get(ref) }), ref }
}
