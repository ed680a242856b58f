/**
 * Success replies of the app's own.
 *
 * A mail from, rcpt to or data middleware that accepts may word the reply:
 * `yield* Accept.ok("2.0.0", "Ok: queued as 1a2b")`. The reply is sent when the
 * phase's chain succeeds; a later call, or one on the way out of `next`, wins
 * over an earlier one, as the last word on a Koa response does. A rejection
 * still wins over any success. Without one, the phase answers with
 * smtp-server's reply (`250 2.1.0 Accepted`, `250 2.1.5 Accepted`,
 * `250 2.6.0 OK: message queued`).
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { Message, RcptTo } from "../services/PhaseInput.ts"

const EnhancedCode = Schema.String.check(
  Schema.isPattern(/^2\.(?:0|[1-9]\d{0,2})\.(?:0|[1-9]\d{0,2})$/, {
    message: "a success enhanced status code is 2.subject.detail, as in 2.1.5 (RFC 3463)"
  })
)

const ReplyText = Schema.String.check(
  Schema.makeFilter((text: string) => !/[\r\n]/.test(text) || "reply text is a single line")
)

/** A positive completion reply: 250, or 251 (RFC 5321: user not local, will forward) for a recipient. */
export class SmtpReply extends Schema.Class<SmtpReply>("SmtpReply")({
  code: Schema.Literals([250, 251]),
  enhanced: EnhancedCode,
  message: ReplyText,
  /** The id a message was stored under, for the log line of an accepted message. */
  queueId: Schema.optionalKey(Schema.String)
}) {
  /** The reply line as sent, without CRLF. */
  get line(): string {
    return `${this.code} ${this.enhanced} ${this.message}`
  }
}

/** Where a phase that can word its success reply keeps it: provided in the mail from, rcpt to and data phases. */
export class PhaseReply extends Context.Service<PhaseReply, {
  readonly set: (reply: SmtpReply) => Effect.Effect<void>
}>()("effect-smtp/PhaseReply") {}

/** Answers this phase, when it accepts, with `250 <enhanced> <text>`. */
export const ok = (enhanced: `2.${string}`, text: string): Effect.Effect<void, never, PhaseReply> =>
  PhaseReply.use((phase) => phase.set(new SmtpReply({ code: 250, enhanced, message: text })))

/** Answers the message, when it is accepted, with `250 2.0.0 Ok: queued as <id>`; the log line of the message has the id. */
export const queued = (id: string): Effect.Effect<void, never, PhaseReply | Message> =>
  PhaseReply.use((phase) => phase.set(new SmtpReply({ code: 250, enhanced: "2.0.0", message: `Ok: queued as ${id}`, queueId: id })))

/** Answers this recipient, when it is accepted, with `251 <enhanced> <text>` (it needs `RcptTo`: RCPT only). */
export const forwarding = (enhanced: `2.${string}`, text: string): Effect.Effect<void, never, PhaseReply | RcptTo> =>
  PhaseReply.use((phase) => phase.set(new SmtpReply({ code: 251, enhanced, message: text })))
