/**
 * Access lists by network: `app.pipe(accessList({ deny: ["203.0.113.0/24"], allow: ["203.0.113.7"] }))`.
 *
 * At connect, the client's address (the proxied client's, after a trusted
 * XCLIENT, which runs the connect phase again; the proxy's own connection is
 * judged first, so an allow list must hold the proxy) is looked up in both lists, CIDR ranges or single addresses, IPv4
 * and IPv6. The most specific entry that holds it decides, as a route table
 * does: an allowed host inside a denied range is allowed. A client no entry
 * holds is accepted when `allow` is empty, and refused when it is not (an
 * allow list names the only clients served). Refused clients get
 * `554 5.7.1 Access denied` and the connection closes.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Networks from "../internal/Networks.ts"
import * as Reject from "../phases/Reject.ts"
import * as SmtpApp from "../phases/SmtpApp.ts"
import { SmtpSession } from "../services/SmtpSession.ts"

/** The lists: CIDR ranges (`10.0.0.0/8`, `2001:db8::/32`) or addresses (`192.0.2.7`). A bad entry throws when the plugin is made. */
export interface Options {
  readonly allow?: ReadonlyArray<string>
  readonly deny?: ReadonlyArray<string>
}

/** Whether the client at `remoteAddress` is served: the most specific entry decides. */
export const admits = (options: Options): (remoteAddress: string) => boolean => {
  const allow = Networks.parse(options.allow ?? [])
  const deny = Networks.parse(options.deny ?? [])
  return (remoteAddress) =>
    Option.match(Networks.address(remoteAddress), {
      onNone: () => allow.length === 0,
      onSome: (ip) => {
        const allowed = Networks.longestMatch(allow, ip)
        const denied = Networks.longestMatch(deny, ip)
        if (Option.isNone(denied)) return Option.isSome(allowed) || allow.length === 0
        return Option.isSome(allowed) && allowed.value.prefixLength >= denied.value.prefixLength
      }
    })
}

export const accessList = (options: Options) => {
  const admitted = admits(options)
  return SmtpApp.onConnect((next) =>
    Effect.gen(function*() {
      const { remoteAddress } = yield* SmtpSession.current
      if (!admitted(remoteAddress)) return yield* Reject.accessDenied
      return yield* next
    })
  )
}
