/**
 * Fumi "Middleware Pattern" and "Middleware Composition": code before `yield* next` runs on the way in, code
 * after it on the way out, and a middleware that does not run `next` ends the chain (and accepts).
 */
import { Effect } from "effect"
import { MailFrom, SmtpApp } from "effect-smtp"

// #region fumi-middleware: Middleware Pattern
export const pattern = SmtpApp.empty.pipe(
  SmtpApp.onMailFrom((next) =>
    Effect.gen(function*() {
      const sender = yield* MailFrom
      yield* Effect.log(`Sender: ${sender.address}`) // before next: runs before downstream middleware
      yield* next
      yield* Effect.log("MailFrom processing complete") // after next: runs after downstream middleware completes
    })
  )
)
// #endregion

// #region fumi-middleware: Middleware Composition
// Execution flows: 1 → 2 → 3 → 2 → 1
export const composition = SmtpApp.empty.pipe(
  SmtpApp.onMailFrom((next) =>
    Effect.gen(function*() {
      yield* Effect.log("1: before")
      yield* next
      yield* Effect.log("1: after")
    })
  ),
  SmtpApp.onMailFrom((next) =>
    Effect.gen(function*() {
      yield* Effect.log("2: before")
      yield* next
      yield* Effect.log("2: after")
    })
  ),
  SmtpApp.onMailFrom(() => Effect.log("3: final handler")) // no next: the end of the chain
)
// #endregion
