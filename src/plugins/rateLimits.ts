/**
 * Rate limits, on Effect's `RateLimiter` (`effect/persistence`):
 * `app.pipe(rateLimits({ connections: { limit: 30, window: "1 minute" } }))`,
 * with `RateLimiter.layer` and a store provided to the server:
 * `RateLimiter.layerStoreMemory` for one instance, `layerStoreRedis` for
 * several that share their counts.
 *
 * Each limit is counted as `RateLimiter`'s fixed window counts: up to `limit`
 * at once, and the count is kept `window / limit` for each command it holds
 * (a full count, for the whole `window`), then forgotten at once. So a
 * burst never passes `limit`, and the rate over time is at most `limit` per
 * `window`. The limits:
 * - `connections`, per client network (its /24, or /64 for IPv6), at
 *   connect: `421 4.7.0 Too many connections from your network, try again in N seconds`
 *   (behind a trusted proxy, list it in `proxies`: the client its XCLIENT
 *   names is counted, in reply to XCLIENT);
 * - `senderMessages`, per sender address (the null sender is not counted):
 *   `451 4.7.1 Too many messages from this sender, …`;
 * - `userMessages`, per logged-in user: `451 4.7.1 Too many messages from this user, …`;
 * - `userRecipients`, per logged-in user: `451 4.7.1 Too many recipients from this user, …`.
 *
 * Messages and recipients are counted at RCPT, once the rest of the app has
 * accepted the recipient (a refused or greylisted recipient, or a MAIL
 * without one, costs nothing): a message at its first recipient, and each
 * recipient. Past a limit, that RCPT gets the reply.
 *
 * A store that fails or does not answer within `storeTimeout` (2 seconds)
 * lets the command through with a warning (`onStoreFailure: "open"`, the
 * default: a Redis outage does not stop mail), or refuses it with
 * `451 4.3.0` (`421 4.3.0` at connect; `"closed"`). Either way it is counted
 * in `smtp_policy_store_failures_total`.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as RateLimiter from "effect/persistence/RateLimiter"
import * as Networks from "../internal/Networks.ts"
import * as PolicyStore from "../internal/PolicyStore.ts"
import * as Reject from "../phases/Reject.ts"
import * as SmtpApp from "../phases/SmtpApp.ts"
import { SmtpSession } from "../services/SmtpSession.ts"
import { SmtpTransaction } from "../services/SmtpTransaction.ts"

/** A burst of at most `limit`, and `limit` per `window` over time. */
export interface Limit {
  readonly limit: number
  readonly window: Duration.Input
}

export interface Options {
  readonly connections?: Limit | undefined
  readonly senderMessages?: Limit | undefined
  readonly userMessages?: Limit | undefined
  readonly userRecipients?: Limit | undefined
  /**
   * Trusted proxies (the `xclientPeers` setting's addresses): their connections are not counted, the clients
   * their XCLIENT names are.
   */
  readonly proxies?: ReadonlyArray<string>
  /** The prefix of the limiter's keys, so that servers sharing a store may keep their counts apart: `effect-smtp`. */
  readonly prefix?: string
  readonly onStoreFailure?: PolicyStore.OnStoreFailure
  readonly storeTimeout?: Duration.Input
}

export const rateLimits = (options: Options) => {
  const prefix = options.prefix ?? "effect-smtp"
  const onStoreFailure = options.onStoreFailure ?? "open"
  const timeout = options.storeTimeout ?? PolicyStore.DEFAULT_TIMEOUT

  // Consumes one from `key`'s count under `limit`; past it, fails with `exceeded`'s rejection.
  const consume = (limit: Limit, key: string, exceeded: (retryAfter: Duration.Duration) => Reject.SmtpRejection, closed: Reject.SmtpRejection) =>
    PolicyStore.guarded(
      "rate_limits",
      { onStoreFailure, timeout, closed },
      RateLimiter.RateLimiter.use((limiter) => limiter.consume({ key: `${prefix}:${key}`, limit: limit.limit, window: limit.window, onExceeded: "fail" })).pipe(
        Effect.mapError((error) => error.reason._tag === "RateLimitExceeded" ? exceeded(error.reason.retryAfter) : error)
      ),
      (error): error is RateLimiter.RateLimiterError => error._tag === "RateLimiterError"
    )

  const proxies = Networks.parse(options.proxies ?? [])

  const limitConnections = (limit: Limit) =>
    SmtpApp.onConnect((next) =>
      Effect.gen(function*() {
        const { remoteAddress, xClient } = yield* SmtpSession.current
        // A proxy's own connection is not the client's: its XCLIENT runs the connect phase again, for the client.
        if (xClient.size === 0 && Networks.includes(proxies, remoteAddress)) return yield* next
        yield* consume(limit, `connections:${Networks.clientNetwork(remoteAddress)}`, Reject.connectionRateExceeded, Reject.policyUnavailableAtConnect)
        return yield* next
      })
    )

  // Counted once the rest of the chain has accepted the recipient: a refused or greylisted one costs nothing.
  const limitTransactions = (senderLimit: Limit | undefined, userLimit: Limit | undefined, recipientLimit: Limit | undefined) =>
    SmtpApp.onRcptTo((next) =>
      Effect.gen(function*() {
        const accepted = yield* next
        const { username } = yield* SmtpSession.current
        const { mailFrom, rcptTo } = yield* SmtpTransaction.current
        // The first recipient accepted: the transaction will carry a message.
        if (rcptTo.length === 0) {
          const sender = Option.match(mailFrom, { onNone: () => "", onSome: (from) => from.address })
          if (senderLimit !== undefined && sender !== "") {
            yield* consume(senderLimit, `sender:${sender.toLowerCase()}`, (retryAfter) => Reject.messageRateExceeded("messages from this sender", retryAfter), Reject.policyUnavailable)
          }
          if (userLimit !== undefined && Option.isSome(username)) {
            yield* consume(userLimit, `user-messages:${username.value}`, (retryAfter) => Reject.messageRateExceeded("messages from this user", retryAfter), Reject.policyUnavailable)
          }
        }
        if (recipientLimit !== undefined && Option.isSome(username)) {
          yield* consume(recipientLimit, `user-recipients:${username.value}`, (retryAfter) => Reject.messageRateExceeded("recipients from this user", retryAfter), Reject.policyUnavailable)
        }
        return accepted
      })
    )

  return <Cs, Ts, R, U extends SmtpApp.UserKey>(app: SmtpApp.SmtpApp<Cs, Ts, R, U>) => {
    const withConnections = options.connections === undefined ? app : app.pipe(limitConnections(options.connections))
    return options.senderMessages === undefined && options.userMessages === undefined && options.userRecipients === undefined
      ? withConnections
      : withConnections.pipe(limitTransactions(options.senderMessages, options.userMessages, options.userRecipients))
  }
}
