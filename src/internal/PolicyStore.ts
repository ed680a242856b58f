/**
 * What a policy plugin does when its store (a shared Redis, most often)
 * fails or does not answer in time: fail open (let the command through, with
 * a warning and a count in `smtp_policy_store_failures_total`) or fail closed
 * (answer a temporary rejection, so the client retries later; counted too).
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import type * as Reject from "../phases/Reject.ts"
import * as SmtpMetrics from "../layers/SmtpMetrics.ts"

/** `open`: let the command through; `closed`: answer `451 4.3.0` (`421 4.3.0` at connect). */
export type OnStoreFailure = "open" | "closed"

/** How long a store lookup may take before it counts as failed: 2 seconds. */
export const DEFAULT_TIMEOUT: Duration.Input = "2 seconds"

/**
 * Runs `lookup` against the store: its own rejections pass, a store error or a lookup slower than `timeout` is
 * a store failure. `Some` with the lookup's result, or `None` when it failed open.
 */
export const guarded = <A, E, R>(
  policy: SmtpMetrics.StorePolicy,
  options: { readonly onStoreFailure: OnStoreFailure; readonly timeout: Duration.Input; readonly closed: Reject.SmtpRejection },
  lookup: Effect.Effect<A, E | Reject.SmtpRejection, R>,
  isStoreError: (error: E | Reject.SmtpRejection) => error is E
): Effect.Effect<Option.Option<A>, Reject.SmtpRejection, R> =>
  lookup.pipe(
    Effect.timeoutOption(options.timeout),
    Effect.flatMap(Option.match({
      onNone: () => failed(policy, options, `no answer within ${Duration.format(Duration.fromInputUnsafe(options.timeout))}`),
      onSome: (value) => Effect.succeed(Option.some(value))
    })),
    Effect.catchIf(isStoreError, (error) => failed(policy, options, describe(error)))
  )

/** A store error on one line for the log: its message and its causes' (down to Redis's own), each once. */
const describe = (error: unknown): string => {
  const messages: Array<string> = []
  for (let current = error, depth = 0; current instanceof Error && depth < 5; current = current.cause, depth++) {
    if (current.message !== "" && !messages.some((message) => message.includes(current.message))) messages.push(current.message)
  }
  return messages.length === 0 ? String(error) : messages.join(": ")
}

const failed = (
  policy: SmtpMetrics.StorePolicy,
  options: { readonly onStoreFailure: OnStoreFailure; readonly closed: Reject.SmtpRejection },
  reason: string
): Effect.Effect<Option.Option<never>, Reject.SmtpRejection> =>
  Metric.update(SmtpMetrics.policyStoreFailures(policy), 1).pipe(
    Effect.andThen(Effect.logWarning(options.onStoreFailure === "open" ? "policy store failed, command let through" : "policy store failed, command refused")),
    Effect.annotateLogs({ policy, reason }),
    Effect.andThen(options.onStoreFailure === "open" ? Effect.succeed(Option.none()) : Effect.fail(options.closed))
  )
