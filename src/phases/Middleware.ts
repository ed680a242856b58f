/**
 * Around-middleware, in the manner of koa-compose.
 *
 * A middleware receives `next`, the rest of the chain, and returns the Effect
 * that runs in its place: code before `yield* next` runs on the way in, code
 * after it on the way out. Not running `next` ends the chain there. Running it
 * twice is a bug, reported as a defect (and so answered with a 451).
 *
 * The middleware function runs once, when the server is built; the Effect it
 * returns runs for every command. `next` runs with the phase's services: a
 * middleware may add services around it or take single ones away (the rest
 * of the chain gets them back), but replacing the whole context around it
 * (`Effect.updateContext(next, () => Context.empty())`) is a defect (451).
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
