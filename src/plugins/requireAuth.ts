/**
 * Mail only from authenticated sessions: MAIL FROM gets `530 5.7.0` otherwise.
 * Enforced here, independently of smtp-server's own gate.
 */
import { Effect, Option } from "effect"
import * as Reject from "../phases/Reject.ts"
import * as SmtpApp from "../phases/SmtpApp.ts"
import { SmtpSession } from "../services/SmtpSession.ts"

const authenticationRequired = Reject.permanent(530, "5.7.0", "Authentication required")

export const requireAuth = SmtpApp.onMailFrom((next) =>
  Effect.flatMap(SmtpSession.current, (session) =>
    Option.isSome(session.username) ? next : Effect.fail(authenticationRequired))
)
