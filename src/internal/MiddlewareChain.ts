/**
 * A phase's middleware composed into one Effect, in the manner of
 * koa-compose and of Effect's `HttpMiddleware`: each middleware function runs
 * once, when the app is served, and the Effect it returns runs for every
 * command. What belongs to one run (how far `next` has got, the phase's
 * services) travels in the fiber's context, under a mark the engine adds.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import { PhaseReply, type SmtpReply } from "../phases/Accept.ts"
import type { Middleware } from "../phases/Middleware.ts"
import * as Reject from "../phases/Reject.ts"

/** One run of a phase: the engine makes one per command, composition reads it. */
export interface Run {
  /** The index of the last `next` run: a second run of one is a bug. */
  reached: number
  /** The phase's context as the run began, this mark included. */
  context: Context.Context<never>
  /** The services the phase adds to the app's: each `next` makes sure they are still there. */
  keys: ReadonlyArray<Context.Key<unknown, unknown>>
  /** The success reply a middleware set (`Accept.ok`), if any. */
  reply: SmtpReply | undefined
}

/** Where a run is found in the fiber's context. */
export class PhaseRun extends Context.Service<PhaseRun, Run>()("effect-smtp/PhaseRun") {}

class NextCalledTwice extends Error {
  override readonly name = "NextCalledTwice"
}

class NextOutsideItsPhase extends Error {
  override readonly name = "NextOutsideItsPhase"
}

/** Sets the reply of the run in the fiber's context: one value for every connection. */
export const phaseReply: PhaseReply["Service"] = PhaseReply.of({
  set: (reply) =>
    Effect.withFiber((fiber) => {
      const run = Context.getOrUndefined(fiber.context, PhaseRun)
      if (run === undefined) return Effect.die(new NextOutsideItsPhase("Accept ran outside its phase"))
      run.reply = reply
      return Effect.void
    })
})

/** True when `context` holds every service the run's phase provides: what `R`, the phase's requirements, are. */
const servesPhase = <R>(context: Context.Context<never>, run: Run): context is Context.Context<R> => {
  if (context === run.context) return true
  for (const key of run.keys) if (Context.getOrUndefined(context, key) === undefined) return false
  return true
}

/** True when `self`, which needs the phase's services, can run in `context` as it is. */
const runsIn = <A, E, R>(self: Effect.Effect<A, E, R>, context: Context.Context<never>, run: Run): self is Effect.Effect<A, E, never> =>
  servesPhase<R>(context, run)

/**
 * `rest`, run as the `next` of middleware `index - 1`: once per run, and with
 * the phase's services even where that middleware took some away around it.
 */
const guarded = <A, E, R>(index: number, rest: Effect.Effect<A, E, R>): Effect.Effect<A, E> =>
  Effect.withFiber((fiber) => {
    const run = Context.getOrUndefined(fiber.context, PhaseRun)
    // Where the whole context was replaced, nothing says which run this is: a bug of the middleware around it.
    if (run === undefined) return Effect.die(new NextOutsideItsPhase("next ran with its phase's context replaced"))
    if (run.reached >= index) return Effect.die(new NextCalledTwice(`middleware ${index - 1} ran next twice`))
    run.reached = index
    if (runsIn(rest, fiber.context, run)) return rest
    // A middleware took some of the phase's services away around `next`: the rest of the chain gets them back.
    const phase = run.context
    return servesPhase<R>(phase, run) ? Effect.provideContext(rest, phase) : Effect.die(new NextOutsideItsPhase("a run's context lacks its phase's services"))
  })

/**
 * The middleware of a phase, in registration order, around `last`: one
 * Effect that needs the phase's services and a `PhaseRun` mark.
 */
export const compose = <A, E, R>(
  middleware: ReadonlyArray<Middleware<A, E, R, E>>,
  last: Effect.Effect<A, E>
): Effect.Effect<A, E, R> => {
  let chain: Effect.Effect<A, E, R> = last
  for (let index = middleware.length - 1; index >= 0; index--) chain = middleware[index]!(guarded(index + 1, chain))
  return chain
}

/** The rest of a chain if the middleware before `index` did not run it. */
const unlessReached = <A, E>(index: number, rest: Effect.Effect<A, E>): Effect.Effect<A | void, E> =>
  Effect.withFiber((fiber) => {
    const run = Context.getOrUndefined(fiber.context, PhaseRun)
    return run !== undefined && run.reached < index ? rest : Effect.void
  })

/**
 * The close phase's middleware: composed as `compose` does, except that each
 * one is followed by the rest of the chain when it did not run `next` or
 * failed, so one plugin's close handler cannot keep another's from running
 * (there is no reply left to decide). The first failure is the chain's.
 */
export const composeAll = <E, R>(
  middleware: ReadonlyArray<Middleware<void, E, R, E>>,
  last: Effect.Effect<void, E>
): Effect.Effect<void, E, R> => {
  let chain: Effect.Effect<void, E, R> = last
  for (let index = middleware.length - 1; index >= 0; index--) {
    const next = guarded(index + 1, chain)
    chain = Effect.flatMap(Effect.exit(middleware[index]!(next)), (exit) => Effect.andThen(unlessReached(index + 1, next), exit))
  }
  return chain
}

/** The end of the auth chain: no middleware accepted the credentials. */
export const endOfAuth: Effect.Effect<never, Reject.SmtpRejection> = Effect.fail(Reject.authenticationFailed)
