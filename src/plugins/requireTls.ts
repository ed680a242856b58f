/**
 * Require TLS for mail: `app.pipe(requireTls())`.
 *
 * MAIL FROM over a connection that is not encrypted (no STARTTLS, not an
 * implicit TLS port) gets `530 5.7.0 Must issue a STARTTLS command first`
 * (RFC 3207). With `networks`, only clients in those networks must use TLS;
 * with `authenticated`, only sessions that have logged in (a login sent in
 * clear text is already exposed, but its mail need not be). Given both, either
 * one requires it.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Networks from "../internal/Networks.ts"
import * as Reject from "../phases/Reject.ts"
import * as SmtpApp from "../phases/SmtpApp.ts"
import { SmtpSession } from "../services/SmtpSession.ts"

/** Whom TLS is required of: everybody unless narrowed. */
export interface Options {
  /** Only clients in these networks (CIDR ranges or addresses). */
  readonly networks?: ReadonlyArray<string>
  /** Only authenticated sessions. */
  readonly authenticated?: boolean
}

export const requireTls = (options: Options = {}) => {
  const networks = Networks.parse(options.networks ?? [])
  const everybody = networks.length === 0 && options.authenticated !== true
  return SmtpApp.onMailFrom((next) =>
    Effect.gen(function*() {
      const session = yield* SmtpSession.current
      const required = everybody ||
        (options.authenticated === true && Option.isSome(session.username)) ||
        Networks.includes(networks, session.remoteAddress)
      if (required && !session.secure) return yield* Reject.tlsRequired
      return yield* next
    })
  )
}
