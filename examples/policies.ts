/**
 * The README's policies: a receiving server built from the package's plugins,
 * with the stores they need in memory (`examples/policies.test.ts` runs it).
 * For several instances, give `rateLimits` and `greylisting` Redis instead.
 */
import { Layer } from "effect"
import {
  accessList,
  authUsers,
  deliver,
  failureInjection,
  greylisting,
  localMailboxes,
  Mailboxes,
  PolicyMemory,
  rateLimits,
  receivedHeader,
  Reject,
  requireTls,
  senderRules,
  SmtpApp,
  SmtpServer,
  Users
} from "effect-smtp"

export const app = SmtpApp.empty.pipe(
  accessList({ deny: ["203.0.113.0/24"] }),
  requireTls({ authenticated: true }),
  senderRules({ deny: ["spam.example"] }),
  localMailboxes({ domains: ["example.com"] }),
  greylisting({ passNetworks: ["10.0.0.0/8"] }),
  rateLimits({ connections: { limit: 30, window: "1 minute" }, senderMessages: { limit: 100, window: "1 hour" } }),
  receivedHeader({ hostname: "mx.example.com" }),
  authUsers,
  deliver
)

/** What the plugins need; the server needs a `MessageStore` and its settings besides. */
export const policyStores = (usersFile: string) =>
  Layer.mergeAll(
    Mailboxes.layerList(["postmaster@example.com", "alice@example.com"]),
    Users.layerFile(usersFile),
    PolicyMemory.layer()
  )

export const server = (usersFile: string) => SmtpServer.layer(app).pipe(Layer.provide(policyStores(usersFile)))

/** For testing a mail client: recipients `full-…` are over quota, and one MAIL in ten fails, the same ones each run. */
export const flakyApp = SmtpApp.empty.pipe(
  failureInjection([
    { phase: "rcptTo", reply: Reject.temporary(452, "4.2.2", "Mailbox full"), when: { recipient: /^full-/ } },
    { phase: "mailFrom", reply: Reject.temporary(451, "4.3.0", "Try again later"), when: { percent: 10, seed: "client-tests" } }
  ]),
  deliver
)
