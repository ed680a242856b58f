/**
 * The mailboxes a server receives for, as the `localMailboxes` plugin asks
 * about them: a service the app provides (a directory lookup, a database, a
 * list), so that unknown recipients are refused at RCPT rather than bounced
 * later.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type { Mailbox } from "./SmtpAddress.ts"

/** The lookup could not answer (its database is down): the recipient gets `451 4.3.0`, to try again later. */
export class MailboxLookupError extends Schema.TaggedError<MailboxLookupError>()("MailboxLookupError", {
  message: Schema.String
}) {}

/** Whether a mailbox exists here. */
export class Mailboxes extends Context.Service<Mailboxes, {
  readonly exists: (mailbox: Mailbox) => Effect.Effect<boolean, MailboxLookupError>
}>()("effect-smtp/Mailboxes") {
  /** A fixed list of addresses, compared case-insensitively. */
  static readonly layerList = (addresses: Iterable<string>): Layer.Layer<Mailboxes> => {
    const known = new Set(Array.from(addresses, (address) => address.toLowerCase()))
    return Layer.succeed(Mailboxes, Mailboxes.of({ exists: (mailbox) => Effect.succeed(known.has(mailbox.address.toLowerCase())) }))
  }
}
