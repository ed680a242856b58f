/**
 * Accept mail for these domains only: other recipients get `550 5.7.1` (relay
 * denied) unless the session is authenticated. An empty list accepts all.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Reject from "../phases/Reject.ts"
import * as SmtpApp from "../phases/SmtpApp.ts"
import { RcptTo } from "../services/PhaseInput.ts"
import { SmtpSession } from "../services/SmtpSession.ts"


export const localDomains = (domains: ReadonlyArray<string>) => {
  const local = new Set(domains.map((domain) => domain.toLowerCase()))
  return SmtpApp.onRcptTo((next) =>
    Effect.gen(function*() {
      const { mailbox } = yield* RcptTo
      if (local.size === 0 || local.has(mailbox.domain)) return yield* next
      const session = yield* SmtpSession.current
      if (Option.isSome(session.username)) return yield* next
      return yield* Reject.relayDenied
    })
  )
}
