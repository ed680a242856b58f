/**
 * Around-middleware and its composition, in the manner of koa-compose.
 *
 * A middleware receives `next`, the rest of the chain, and returns the Effect
 * that runs in its place: code before `yield* next` runs on the way in, code
 * after it on the way out. Not running `next` ends the chain there. Running it
 * twice is a bug, reported as a defect (and so answered with a 451).
 */
import { Context, Effect } from "effect"
import type { SmtpRejection } from "./Reject.ts"

/**
 * One step of a phase. `next` is typed as failing only with rejections because
 * every middleware is required to map its own failures to rejections before it
 * can be added (see `SmtpApp`).
 */
export interface Middleware<A, E extends SmtpRejection, R> {
  (next: Effect.Effect<A, SmtpRejection>): Effect.Effect<A, E, R>
}

/** A middleware bound to the services of its phase, as an app stores it. */
export interface Link<A, Inputs, R> {
  (inputs: Context.Context<Inputs>, next: Effect.Effect<A, SmtpRejection>): Effect.Effect<A, SmtpRejection, R>
}

/** Binds a middleware to its phase: the phase's services are provided to it alone. */
export const link = <A, E extends SmtpRejection, R, Inputs>(
  middleware: Middleware<A, E, R>
): Link<A, Inputs, Exclude<R, Inputs>> =>
(inputs, next) => Effect.provideContext(middleware(next), inputs)

class NextCalledTwice extends Error {
  override readonly name = "NextCalledTwice"
}

/**
 * Runs `links` in order around `last`. `next` carries the context of the
 * caller (log annotations, spans, services a middleware provided) down the
 * chain, on top of the app's services `app`.
 */
export const compose = <A, Inputs, R>(
  links: ReadonlyArray<Link<A, Inputs, R>>,
  inputs: Context.Context<Inputs>,
  last: Effect.Effect<A, SmtpRejection>,
  app: Context.Context<R>
): Effect.Effect<A, SmtpRejection, R> => {
  if (links.length === 0) return last
  return Effect.suspend(() => {
    let reached = -1
    const dispatch = (i: number): Effect.Effect<A, SmtpRejection> =>
      Effect.suspend(() => {
        if (i <= reached) return Effect.die(new NextCalledTwice(`middleware ${i - 1} ran next twice`))
        reached = i
        const current = links[i]
        if (current === undefined) return last
        return Effect.updateContext(current(inputs, dispatch(i + 1)), (caller: Context.Context<never>) => Context.merge(app, caller))
      })
    return dispatch(0)
  })
}
