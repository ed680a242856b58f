/**
 * Typed SMTP rejections.
 *
 * A phase rejects a command by failing with an `SmtpRejection`: the reply code
 * (4xx temporary, 5xx permanent), the RFC 3463 enhanced status code and the
 * text. Both are validated when the value is built, so a `550 4.1.1` cannot
 * exist. `closing` builds the `421` reply after which the server hangs up.
 */
import * as Schema from "effect/Schema"

const ReplyCode = Schema.Int.check(
  Schema.makeFilter((code: number) => (code >= 400 && code <= 599) || "a rejection code is 4xx or 5xx")
)

const EnhancedCode = Schema.String.check(
  Schema.isPattern(/^[45]\.(?:0|[1-9]\d{0,2})\.(?:0|[1-9]\d{0,2})$/, {
    message: "an enhanced status code is class.subject.detail, as in 5.7.1 (RFC 3463)"
  })
)

const ReplyText = Schema.String.check(
  Schema.makeFilter((text: string) => !/[\r\n]/.test(text) || "reply text is a single line")
)

const Fields = Schema.Struct({ code: ReplyCode, enhanced: EnhancedCode, message: ReplyText }).check(
  Schema.makeFilter((reply: { readonly code: number; readonly enhanced: string }) =>
    reply.enhanced[0] === String(reply.code)[0] || "the enhanced status class must match the reply code class"
  )
)

/** An SMTP rejection: the exact reply the client gets. */
export class SmtpRejection extends Schema.TaggedError<SmtpRejection>()("SmtpRejection", Fields) {
  /** The reply line as sent, without CRLF. */
  get line(): string {
    return `${this.code} ${this.enhanced} ${this.message}`
  }
}

/** The 4xx reply codes of RFC 5321 and RFC 4954. */
export type TemporaryCode = 421 | 450 | 451 | 452 | 454 | 455

/** The 5xx reply codes of RFC 5321, RFC 4954 and RFC 7504. */
export type PermanentCode = 500 | 501 | 502 | 503 | 504 | 521 | 530 | 534 | 535 | 538 | 550 | 551 | 552 | 553 | 554 | 555 | 556

/** A temporary (4xx) rejection: `Reject.temporary(451, "4.3.0", "Try again later")`. */
export const temporary = (code: TemporaryCode, enhanced: `4.${string}`, message: string): SmtpRejection =>
  new SmtpRejection({ code, enhanced, message })

/** A permanent (5xx) rejection: `Reject.permanent(550, "5.7.1", "Relay denied")`. */
export const permanent = (code: PermanentCode, enhanced: `5.${string}`, message: string): SmtpRejection =>
  new SmtpRejection({ code, enhanced, message })

/** `421`: the server answers and then closes the connection. */
export const closing = (enhanced: `4.${string}`, message: string): SmtpRejection =>
  new SmtpRejection({ code: 421, enhanced, message })

/** `451 4.3.0`: the reply for a bug (a defect) in a handler. */
export const internalError: SmtpRejection = temporary(451, "4.3.0", "Internal server error, try again later")

/** `421 4.3.2`: the reply while the server shuts down. */
export const shuttingDown: SmtpRejection = closing("4.3.2", "Service shutting down, try again later")

/** `451 4.4.1`: a handler did not finish within its phase timeout. */
export const timedOut: SmtpRejection = temporary(451, "4.4.1", "Timed out while processing the command, try again later")
