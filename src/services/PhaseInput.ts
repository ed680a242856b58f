/**
 * What the command being handled carries, as services.
 *
 * Like effect/http's `HttpServerRequest`, the input of a phase is a service in
 * the handler's context: `yield* TlsSession` in a secure handler,
 * `yield* MailFrom` in a mail from handler,
 * `yield* RcptTo` in a rcpt to handler, `yield* Credentials` in an auth
 * handler and `yield* Message` in a data handler. A handler that asks for the
 * input of another phase does not compile.
 */
import * as Context from "effect/Context"
import type * as Redacted from "effect/Redacted"
import type * as Stream from "effect/Stream"
import type { MessageTooLarge, SmtpRejection } from "../phases/Reject.ts"
import type { MailFromAddress, RcptToAddress } from "./SmtpAddress.ts"
import type { Tls } from "./SmtpSession.ts"
import type { Envelope } from "./SmtpTransaction.ts"

/** The TLS session just established (STARTTLS, or implicit TLS): the secure phase's input. */
export class TlsSession extends Context.Service<TlsSession, Tls>()("effect-smtp/TlsSession") {}

/** The sender of the MAIL FROM command being handled. */
export class MailFrom extends Context.Service<MailFrom, MailFromAddress>()("effect-smtp/MailFrom") {}

/** The recipient of the RCPT TO command being handled. */
export class RcptTo extends Context.Service<RcptTo, RcptToAddress>()("effect-smtp/RcptTo") {}

/** The credentials of the AUTH command being handled. */
export class Credentials extends Context.Service<Credentials, {
  readonly method: "PLAIN" | "LOGIN"
  readonly username: string
  readonly password: Redacted.Redacted<string>
}>()("effect-smtp/Credentials") {}

/** The message of the DATA command being handled. */
export class Message extends Context.Service<Message, {
  /** Its envelope: the sender and at least one recipient. */
  readonly envelope: Envelope
  /**
   * The body after dot-unstuffing, with back-pressure. It fails with
   * `MessageTooLarge` past the maximum message size, and with a rejection
   * when the content breaks the message rules (`550`) or the client goes away
   * (`451 4.3.0`). Whatever the handler does, the rest is drained.
   */
  readonly stream: Stream.Stream<Uint8Array, SmtpRejection | MessageTooLarge>
}>()("effect-smtp/Message") {}

/** The user of an app that needs no more than the user name, as the `authUsers` plugin accepts it. */
export class Username extends Context.Service<Username, string>()("effect-smtp/Username") {}
