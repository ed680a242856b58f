/**
 * Typed SMTP rejections.
 *
 * A phase rejects a command by failing with an `SmtpRejection`: the reply code
 * (4xx temporary, 5xx permanent), the RFC 3463 enhanced status code and the
 * text. Both are validated when the value is built, so a `550 4.1.1` cannot
 * exist. `closing` builds the `421` reply after which the server hangs up.
 */
import * as Duration from "effect/Duration"
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

// The replies effect-smtp sends itself, in one place: the engine's protocol rules, the message checks, the
// address decoding, storage and the bundled plugins. Tests and apps can compare a reply against these.

/** `554 5.5.0`: a command a client had to wait before sending more after (RFC 2920, RFC 3207); the connection closes. */
export const outOfSync: SmtpRejection = permanent(554, "5.5.0", "Error: SMTP protocol synchronization, closing the connection")
/** `500 5.5.2`: a command line longer than RFC 5321 allows. */
export const lineTooLong: SmtpRejection = permanent(500, "5.5.2", "Line too long")
/** `500 5.5.2`: input far longer than any command line; the connection closes. */
export const overlongInput: SmtpRejection = permanent(500, "5.5.2", "Line too long, closing the connection")
/** `500 5.5.2`: an unknown verb. */
export const unrecognized: SmtpRejection = permanent(500, "5.5.2", "Error: command not recognized")
/** `555 5.5.4`: a MAIL or RCPT parameter that is malformed or not offered. */
export const badParameter: SmtpRejection = permanent(555, "5.5.4", "Unsupported or malformed parameter")
/** `501 5.5.2`: a SASL response that is not base64. */
export const badBase64: SmtpRejection = permanent(501, "5.5.2", "Cannot decode the response: not base64")
/** `504 5.5.4`: an AUTH mechanism that is not offered. */
export const unknownAuthMechanism: SmtpRejection = permanent(504, "5.5.4", "Unrecognized authentication type")
/** `502 5.5.1`: BDAT (CHUNKING is not offered); the connection closes. */
export const bdatRefused: SmtpRejection = permanent(502, "5.5.1", "BDAT is not supported, closing the connection")
/** `530 5.7.0`: a transaction command before AUTH where authentication is required. */
export const authenticationRequired: SmtpRejection = permanent(530, "5.7.0", "Authentication required")
/** `503 5.5.1`: AUTH during a mail transaction (RFC 4954 section 4). */
export const authInTransaction: SmtpRejection = permanent(503, "5.5.1", "AUTH is not permitted during a mail transaction")
/** `550 5.7.0`: XCLIENT LOGIN, which would log a user in past the app's auth phase. */
export const xclientLogin: SmtpRejection = permanent(550, "5.7.0", "XCLIENT LOGIN is not supported: use AUTH")
/** `535 5.7.8`: credentials no auth middleware accepted. */
export const authenticationFailed: SmtpRejection = permanent(535, "5.7.8", "Authentication credentials invalid")
/** `454 4.7.0`: the user store could not be read (the `authUsers` plugin). */
export const authUnavailable: SmtpRejection = temporary(454, "4.7.0", "Temporary authentication failure")
/** `421 4.7.0`: too many failed AUTH attempts on one connection. */
export const tooManyAuthFailures: SmtpRejection = closing("4.7.0", "Too many failed authentication attempts")
/** `421 4.7.0`: too many commands that do not send mail. */
export const tooMuchJunk: SmtpRejection = closing("4.7.0", "Too many commands that do not send mail")
/** `421 4.7.0`: the server's connection limit. */
export const tooManyClients: SmtpRejection = closing("4.7.0", "Too many connections, try again later")
/** `421 4.7.0`: the per-client connection limit. */
export const tooManyFromYou: SmtpRejection = closing("4.7.0", "Too many connections from your address, try again later")
/** `421 4.4.2`: a command line not completed within commandTimeout. */
export const commandTimedOut: SmtpRejection = closing("4.4.2", "Timeout receiving the command line, closing the connection")
/** `421 4.4.2`: a message not received within dataTimeout or at minDataRate. */
export const dataTimedOut: SmtpRejection = closing("4.4.2", "Timeout receiving the message, closing the connection")
/** `552 5.3.4`: a message over maxMessageSize. */
export const tooBig: SmtpRejection = permanent(552, "5.3.4", "Message size exceeds fixed maximum message size")

/**
 * The message stream passed `maxMessageSize`: the limit and the bytes received so far. A data handler may map it to
 * a rejection of its own; left as it is, it is answered with `tooBig`. Either way the rest of the body is drained.
 */
export class MessageTooLarge extends Schema.TaggedError<MessageTooLarge>()("MessageTooLarge", {
  limit: Schema.Int,
  received: Schema.Int
}) {
  override get message(): string {
    return `message of ${this.received} bytes or more exceeds the limit of ${this.limit} bytes`
  }
}
/** `451 4.3.0`: the client left or the connection failed in the middle of the message. */
export const readFailed: SmtpRejection = temporary(451, "4.3.0", "Error reading the message")
/** `550 5.5.2`: a bare CR or LF in a message (SMTP smuggling). */
export const bareLineEnding: SmtpRejection = permanent(550, "5.5.2", "Message contains a bare CR or LF: lines must end with CRLF")
/** `550 5.6.0`: a NUL byte in a message. */
export const nulByte: SmtpRejection = permanent(550, "5.6.0", "Message contains NUL bytes")
/** `550 5.6.0`: a message line longer than `limit` bytes. */
export const messageLineTooLong = (limit: number): SmtpRejection =>
  permanent(550, "5.6.0", `Message has a line longer than ${limit} bytes`)
/** `553 5.6.7`: a non-ASCII address without SMTPUTF8. */
export const nonAsciiWithoutSmtpUtf8: SmtpRejection = permanent(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
/** `501 5.5.2`: an address that is not valid UTF-8. */
export const invalidUtf8: SmtpRejection = permanent(501, "5.5.2", "Address is not valid UTF-8")
/** `553 5.1.7` or `5.1.3`: an address whose syntax is invalid. */
export const badAddressSyntax = (enhanced: "5.1.7" | "5.1.3"): SmtpRejection => permanent(553, enhanced, "Mailbox name syntax is invalid")
/** `501`: an address part over its RFC 5321 length limit. */
export const addressTooLong = (enhanced: "5.1.7" | "5.1.8" | "5.1.3" | "5.1.2", part: "Local part" | "Domain" | "Path", limit: number): SmtpRejection =>
  permanent(501, enhanced, `${part} longer than ${limit} octets`)
/** `452 4.3.1`: the message store is full. */
export const insufficientStorage: SmtpRejection = temporary(452, "4.3.1", "Insufficient system storage, try again later")
/** `451 4.3.0`: the message store failed. */
export const storageFailed: SmtpRejection = temporary(451, "4.3.0", "Could not store the message, try again later")
/** `550 5.7.1`: a recipient outside the local domains (the `localRecipients` plugin). */
export const relayDenied: SmtpRejection = permanent(550, "5.7.1", "Relay access denied")
/** `550 5.1.1`: a recipient on a local domain that has no such mailbox (the `localMailboxes` plugin). */
export const unknownMailbox: SmtpRejection = permanent(550, "5.1.1", "Mailbox unavailable: no such user here")
/** `451 4.3.0`: the mailbox lookup failed (the `localMailboxes` plugin). */
export const mailboxLookupFailed: SmtpRejection = temporary(451, "4.3.0", "Cannot check the recipient now, try again later")
/** `554 5.7.1`: a client the access list refuses, at connect (the `accessList` plugin). */
export const accessDenied: SmtpRejection = permanent(554, "5.7.1", "Access denied")
/** `530 5.7.0`: MAIL over a connection that is not encrypted (the `requireTls` plugin). */
export const tlsRequired: SmtpRejection = permanent(530, "5.7.0", "Must issue a STARTTLS command first")
/** `550 5.7.1`: a sender the sender rules refuse (the `senderRules` plugin). */
export const senderDenied: SmtpRejection = permanent(550, "5.7.1", "Sender address rejected: access denied")
/** A wait in whole seconds, rounded up (and at least one): a client that waits as long is not too early. */
const seconds = (retryAfter: Duration.Duration): number => Math.max(1, Math.ceil(Duration.toMillis(retryAfter) / 1000))

/** `421 4.7.0`: too many connections from the client's network within the window (the `rateLimits` plugin). */
export const connectionRateExceeded = (retryAfter: Duration.Duration): SmtpRejection =>
  closing("4.7.0", `Too many connections from your network, try again in ${seconds(retryAfter)} seconds`)
/** `451 4.7.1`: too many messages or recipients within the window (the `rateLimits` plugin). */
export const messageRateExceeded = (
  what: "messages from this sender" | "messages from this user" | "recipients from this user",
  retryAfter: Duration.Duration
): SmtpRejection => temporary(451, "4.7.1", `Too many ${what}, try again in ${seconds(retryAfter)} seconds`)
/** `451 4.7.1`: a sender, recipient and client network not seen before, or retrying too soon (the `greylisting` plugin). */
export const greylisted = (retryAfter: Duration.Duration): SmtpRejection =>
  temporary(451, "4.7.1", `Greylisted, try again in ${seconds(retryAfter)} seconds`)
/** `451 4.3.0`: a policy's shared store (Redis) cannot be reached and the policy fails closed. */
export const policyUnavailable: SmtpRejection = temporary(451, "4.3.0", "Policy service unavailable, try again later")
/** `421 4.3.0`: as `policyUnavailable`, at connect (where the reply ends the connection). */
export const policyUnavailableAtConnect: SmtpRejection = closing("4.3.0", "Policy service unavailable, try again later")
