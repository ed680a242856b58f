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
import type * as Effect from "effect/Effect"
import type { MessageTooLarge, SmtpRejection } from "./Reject.ts"

/**
 * One step of a phase that succeeds with `A` (`void`, or the user for auth).
 * `next` fails only with what a phase lets through (`N`: rejections, and in
 * the data phase `MessageTooLarge`), because every middleware must map its own
 * failures to those before it can be added (see `SmtpApp`).
 */
export interface Middleware<A, E extends N, R, N = SmtpRejection> {
  (next: Effect.Effect<A, N>): Effect.Effect<A, E, R>
}

/** What a data middleware may fail with: a rejection, or the message stream's `MessageTooLarge` (answered `552 5.3.4`). */
export type DataError = SmtpRejection | MessageTooLarge
