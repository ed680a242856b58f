/**
 * Greylisting: `app.pipe(greylisting())`, with a store for its entries
 * provided to the server: Effect's `Persistence.layerBackingMemory` for one
 * instance, `Persistence.layerBackingRedis` for several that share one list.
 *
 * A recipient whose triplet (the client's network, /24 or /64; the sender;
 * the recipient) has not been seen gets `451 4.7.1 Greylisted, try again in N seconds`:
 * real mail servers retry, most spam software does not. A retry after
 * `delay` (5 minutes) and within `retryWindow` (24 hours) of the first try is
 * accepted, and the triplet passes from then on for `passFor` (36 days,
 * renewed by each message); a `delay` not shorter than `retryWindow` throws
 * when the plugin is made. Sessions that have logged in, and clients in
 * `passNetworks`, are never greylisted. Store failures are handled as in
 * `rateLimits` (`onStoreFailure`, `open` by default).
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Persistence from "effect/persistence/Persistence"
import * as Schema from "effect/Schema"
import * as Networks from "../internal/Networks.ts"
import * as PolicyStore from "../internal/PolicyStore.ts"
import * as Reject from "../phases/Reject.ts"
import * as SmtpApp from "../phases/SmtpApp.ts"
import { RcptTo } from "../services/PhaseInput.ts"
import { SmtpSession } from "../services/SmtpSession.ts"
import { SmtpTransaction } from "../services/SmtpTransaction.ts"

export interface Options {
  /** How long a new triplet must wait before a retry is accepted: 5 minutes. */
  readonly delay?: Duration.Input
  /** How long after its first try a triplet's retry is accepted: 24 hours (later, it starts again). */
  readonly retryWindow?: Duration.Input
  /** How long a triplet that passed keeps passing without waiting: 36 days, from its last message. */
  readonly passFor?: Duration.Input
  /** Clients never greylisted: CIDR ranges or addresses. */
  readonly passNetworks?: ReadonlyArray<string>
  /** The store's name, so that servers sharing a store may keep their lists apart: `effect-smtp-greylist`. */
  readonly storeId?: string
  readonly onStoreFailure?: PolicyStore.OnStoreFailure
  readonly storeTimeout?: Duration.Input
}

const Entry = Schema.Struct({ firstSeen: Schema.Number, passed: Schema.Boolean })
const decodeEntry = Schema.decodeUnknownOption(Entry)

export const greylisting = (options: Options = {}) => {
  const delay = Duration.toMillis(Duration.fromInputUnsafe(options.delay ?? "5 minutes"))
  const retryWindow = Duration.fromInputUnsafe(options.retryWindow ?? "24 hours")
  const passFor = Duration.fromInputUnsafe(options.passFor ?? "36 days")
  // The first try's entry lasts retryWindow: with a longer delay nothing would ever pass.
  if (delay >= Duration.toMillis(retryWindow)) {
    throw new Error(`greylisting: delay (${Duration.format(Duration.millis(delay))}) must be shorter than retryWindow (${Duration.format(retryWindow)})`)
  }
  const passNetworks = Networks.parse(options.passNetworks ?? [])
  const storeId = options.storeId ?? "effect-smtp-greylist"
  const guard = { onStoreFailure: options.onStoreFailure ?? "open", timeout: options.storeTimeout ?? PolicyStore.DEFAULT_TIMEOUT, closed: Reject.policyUnavailable } as const

  // The triplet's verdict, and the store written as it changes it.
  const check = (key: string) =>
    Effect.scoped(Effect.gen(function*() {
      const store = yield* Persistence.BackingPersistence.use((backing) => backing.make(storeId))
      const now = yield* Clock.currentTimeMillis
      const entry = decodeEntry(yield* store.get(key))
      if (Option.isNone(entry) || now - entry.value.firstSeen > Duration.toMillis(retryWindow) && !entry.value.passed) {
        yield* store.set(key, { firstSeen: now, passed: false }, retryWindow)
        return yield* Reject.greylisted(Duration.millis(delay))
      }
      const waited = now - entry.value.firstSeen
      if (!entry.value.passed && waited < delay) return yield* Reject.greylisted(Duration.millis(delay - waited))
      yield* store.set(key, { firstSeen: entry.value.firstSeen, passed: true }, passFor)
    }))

  return SmtpApp.onRcptTo((next) =>
    Effect.gen(function*() {
      const session = yield* SmtpSession.current
      if (Option.isSome(session.username) || Networks.includes(passNetworks, session.remoteAddress)) return yield* next
      // RCPT comes after MAIL: the transaction has its sender.
      const sender = Option.match((yield* SmtpTransaction.current).mailFrom, { onNone: () => "", onSome: (from) => from.address })
      const { address } = yield* RcptTo
      const key = `${Networks.clientNetwork(session.remoteAddress)}|${sender.toLowerCase()}|${address.toLowerCase()}`
      yield* PolicyStore.guarded("greylisting", guard, check(key), (error): error is Persistence.PersistenceError => error._tag === "PersistenceError")
      return yield* next
    })
  )
}
