/**
 * Around-middleware, in the manner of koa-compose.
 *
 * A middleware receives `next`, the rest of the chain, and returns the Effect
 * that runs in its place: code before `yield* next` runs on the way in, code
 * after it on the way out. Not running `next` ends the chain there. Running it
 * twice is a bug, reported as a defect (and so answered with a 451).
 */
import * as Effect from "effect/Effect"
import type { SmtpRejection } from "./Reject.ts"

/**
 * One step of a phase. `next` is typed as failing only with rejections because
 * every middleware is required to map its own failures to rejections before it
 * can be added (see `SmtpApp`).
 */
export interface Middleware<A, E extends SmtpRejection, R> {
  (next: Effect.Effect<A, SmtpRejection>): Effect.Effect<A, E, R>
}
