/**
 * How an app stores and runs its middleware: each middleware bound to its
 * phase's services (`link`), and the chain of a phase run in registration
 * order around the end of the chain (`compose`), in the manner of koa-compose.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type { Middleware } from "../phases/Middleware.ts"
import * as Reject from "../phases/Reject.ts"
import type { Phase } from "../phases/SmtpApp.ts"

/** A middleware bound to the services of its phase, as an app stores it. */
export interface Link<A, Inputs, R> {
  (inputs: Context.Context<Inputs>, next: Effect.Effect<A, Reject.SmtpRejection>): Effect.Effect<A, Reject.SmtpRejection, R>
}

/** Marks the context one run of a phase starts in; the mark is a fresh object per run. */
class PhaseRun extends Context.Service<PhaseRun, object>()("effect-smtp/PhaseRun") {}

/**
 * `context`, marked as the context of one run of a phase. Providing it costs
 * nothing where it is in effect already: in the phase's own fiber, and
 * wherever a middleware ran `next` with services added on top of it.
 */
export const phaseContext = <S>(context: Context.Context<S>): Context.Context<S> => Context.add(context, PhaseRun, {})

/**
 * True when the fiber's `context` was made from the marked `phase` by adding
 * services (the mark is a fresh object per run, found nowhere else): `self`
 * then finds every service of `phase` there, or the value a middleware
 * provided in its place to `next`, and needs no more than the rest from outside.
 */
const runsWithin = <A, E, R, P>(
  self: Effect.Effect<A, E, R>,
  context: Context.Context<never>,
  phase: Context.Context<P>
): self is Effect.Effect<A, E, Exclude<R, P>> => {
  const mark = Context.getOrUndefined(phase, PhaseRun)
  if (mark === undefined || Context.getOrUndefined(context, PhaseRun) !== mark) return false
  // A middleware may also have taken services away around `next` (Effect.updateContext): all must still be there.
  for (const key of phase.mapUnsafe.keys()) if (!context.mapUnsafe.has(key)) return false
  return true
}

/** `self` with `services` provided, without a context copy when the fiber has them already. */
const provideWithin = <A, E, R, P>(self: Effect.Effect<A, E, R>, services: Context.Context<P>): Effect.Effect<A, E, Exclude<R, P>> =>
  Effect.withFiber((fiber) => runsWithin(self, fiber.context, services) ? self : Effect.provideContext(self, services))

/**
 * Binds a middleware to its phase: the phase's services are provided to it,
 * at no cost where they are in effect already (see `phaseContext`).
 */
export const link = <A, E extends Reject.SmtpRejection, R, Inputs>(
  middleware: Middleware<A, E, R>
): Link<A, Inputs, Exclude<R, Inputs>> =>
(inputs, next) => provideWithin(middleware(next), inputs)

class NextCalledTwice extends Error {
  override readonly name = "NextCalledTwice"
}

/**
 * Runs `links` in order around `last`, with the services of `phase` (a
 * context made by `phaseContext`, holding the phase's inputs and the app's
 * services). `next` carries the context of the caller (log annotations, spans,
 * services a middleware provided) down the chain; run outside it, it gets the
 * phase's services back.
 */
export const compose = <A, Inputs, R>(
  links: ReadonlyArray<Link<A, Inputs, R>>,
  phase: Context.Context<Inputs | R>,
  last: Effect.Effect<A, Reject.SmtpRejection>
): Effect.Effect<A, Reject.SmtpRejection> => {
  if (links.length === 0) return last
  let reached = -1
  const dispatch = (i: number): Effect.Effect<A, Reject.SmtpRejection> =>
    Effect.withFiber((fiber) => {
      if (i <= reached) return Effect.die(new NextCalledTwice(`middleware ${i - 1} ran next twice`))
      reached = i
      const current = links[i]
      if (current === undefined) return last
      const step = current(phase, dispatch(i + 1))
      return runsWithin(step, fiber.context, phase) ? step : Effect.provideContext(step, phase)
    })
  return dispatch(0)
}

/** What an auth chain that nobody accepted answers. */
const authRejected: Reject.SmtpRejection = Reject.permanent(535, "5.7.8", "Authentication credentials invalid")

/** The end of a chain: auth rejects, every other phase accepts. */
export const endOfChain = (phase: Phase): Effect.Effect<void, Reject.SmtpRejection> =>
  phase === "auth" ? Effect.fail(authRejected) : Effect.void
