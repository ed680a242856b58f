/**
 * The `Received:` trace field (RFC 5321 section 4.4) a receiving server
 * prepends to each message: `app.pipe(receivedHeader({ hostname }), deliver)`.
 *
 * Data middleware after it read the message with the field in front:
 *
 *     Received: from <HELO name> (<reverse DNS name> [<client address>])
 *             by <hostname> with <ESMTP, ESMTPS, ESMTPSA…> id <connection id>
 *             for <recipient>;
 *             <date>
 *
 * (`for` only when the message has one recipient, so as not to disclose the
 * others.) A HELO name that is neither a domain nor an address literal is
 * not trusted with the `from` part: the client's address literal is, and the
 * name goes in the comment, as `helo=` with unprintable characters and
 * parentheses replaced by `?`. Any message store gets it, Maildir or the app's own.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as net from "node:net"
import * as SmtpApp from "../phases/SmtpApp.ts"
import { Message } from "../services/PhaseInput.ts"
import { SmtpSession, type State } from "../services/SmtpSession.ts"
import type { Envelope } from "../services/SmtpTransaction.ts"

/** The name this server gives itself in the field (the `hostname` setting, as a rule). */
export interface Options {
  readonly hostname: string
}

/** RFC 5322 date-time, as in `Sat, 21 Nov 2026 18:00:00 +0000`. */
const rfc5322Date = (date: Date): string => date.toUTCString().replace("GMT", "+0000")

/** The client's address as an RFC 5321 address literal. */
const addressLiteral = (address: string): string => net.isIPv6(address) ? `[IPv6:${address}]` : `[${address}]`

const DOMAIN = /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/
const ADDRESS_LITERAL = /^\[(?:IPv6:[0-9A-Fa-f:.]+|[0-9.]+)\]$/

/** The field, folded (its lines ended with CRLF). */
export const field = (session: State, envelope: Envelope, hostname: string, date: Date): string => {
  const literal = addressLiteral(session.remoteAddress)
  const helo = Option.getOrElse(session.heloName, () => literal)
  // RFC 5321 wants a domain or an address literal after `from`: any other HELO name goes in the comment, escaped.
  const valid = DOMAIN.test(helo) || ADDRESS_LITERAL.test(helo)
  // The client's name from reverse DNS, where it is known, beside its address: never the address twice.
  const tcpInfo = (session.clientHostname.startsWith("[") ? literal : `${session.clientHostname} ${literal}`) +
    (valid ? "" : ` helo=${helo.replace(/[^\x21-\x7e]|[()\\]/g, "?")}`)
  const forClause = envelope.rcptTo.length === 1 ? `\r\n\tfor <${envelope.rcptTo[0]?.address}>` : ""
  return `Received: from ${valid ? helo : literal} (${tcpInfo})\r\n` +
    `\tby ${hostname} with ${session.transmissionType} id ${session.id}${forClause};\r\n\t${rfc5322Date(date)}\r\n`
}

const encoder = new TextEncoder()

export const receivedHeader = (options: Options) =>
  SmtpApp.onData((next) =>
    Effect.gen(function*() {
      const message = yield* Message
      const session = yield* SmtpSession.current
      const now = yield* Clock.currentTimeMillis
      const trace = encoder.encode(field(session, message.envelope, options.hostname, new Date(now)))
      return yield* Effect.provideService(next, Message, { ...message, stream: Stream.concat(Stream.succeed(trace), message.stream) })
    })
  )
