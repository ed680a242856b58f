/**
 * Local recipients: accept mail for this server's domains, refuse relaying.
 *
 * `localRecipients({ domains })` accepts recipients at the listed domains
 * and refuses the others with `550 5.7.1 Relay access denied`: a server that
 * receives mail must not pass it on for anyone (an open relay). Sessions that
 * have logged in may relay (`relay: "authenticated"`, the default; `"never"`
 * refuses them too). An empty list accepts every recipient.
 *
 * `localMailboxes({ domains })` does the same, and also asks the app's
 * `Mailboxes` service whether a local recipient's mailbox exists: one that
 * does not gets `550 5.1.1`, and a lookup that fails `451 4.3.0`. With no
 * domains, every recipient is looked up.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Reject from "../phases/Reject.ts"
import * as SmtpApp from "../phases/SmtpApp.ts"
import { Mailboxes } from "../services/Mailboxes.ts"
import { RcptTo } from "../services/PhaseInput.ts"
import type { Mailbox } from "../services/SmtpAddress.ts"
import { SmtpSession } from "../services/SmtpSession.ts"

/** The local domains, and whether logged-in sessions may send elsewhere. */
export interface Options {
  readonly domains: ReadonlyArray<string>
  /** `authenticated` (the default): logged-in sessions may relay; `never`: nobody may. */
  readonly relay?: "authenticated" | "never"
}

const recipients = <R>(options: Options, checkLocal: (mailbox: Mailbox) => Effect.Effect<void, Reject.SmtpRejection, R>) => {
  const local = new Set(options.domains.map((domain) => domain.toLowerCase()))
  const relayAuthenticated = (options.relay ?? "authenticated") === "authenticated"
  return SmtpApp.onRcptTo((next) =>
    Effect.gen(function*() {
      const { mailbox } = yield* RcptTo
      if (local.size === 0 || local.has(mailbox.domain)) {
        yield* checkLocal(mailbox)
        return yield* next
      }
      const session = yield* SmtpSession.current
      if (relayAuthenticated && Option.isSome(session.username)) return yield* next
      return yield* Reject.relayDenied
    })
  )
}

export const localRecipients = (options: Options) => recipients(options, () => Effect.void)

export const localMailboxes = (options: Options) =>
  recipients(options, (mailbox) =>
    Mailboxes.use((mailboxes) => mailboxes.exists(mailbox)).pipe(
      Effect.catchTag("MailboxLookupError", (error) =>
        Effect.logWarning("mailbox lookup failed").pipe(
          Effect.annotateLogs({ recipient: mailbox.address, error: error.message }),
          Effect.andThen(Effect.fail(Reject.mailboxLookupFailed))
        )),
      Effect.flatMap((exists) => exists ? Effect.void : Effect.fail(Reject.unknownMailbox))
    ))
