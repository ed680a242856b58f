/**
 * Runs one phase for a connection and answers smtp-server exactly once.
 *
 * The phase's chain runs in a fiber whose context is the phase's services,
 * annotated for the logs and marked for the middleware chain. A handler that
 * suspends gets the phase's deadline, on the app's Clock; one that completes
 * at once needs neither a timer nor a record. A defect is logged and answered
 * with `451 4.3.0`, a phase past its deadline with `451 4.4.1`, an interrupted
 * one with `421 4.3.2`. A phase that completes at once is answered at once,
 * as smtp-server's own handlers answer; one that suspends, when it ends.
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as References from "effect/References"
import * as Tracer from "effect/Tracer"
import * as Result from "effect/Result"
import type { SmtpReply } from "../../phases/Accept.ts"
import type { DataError } from "../../phases/Middleware.ts"
import * as Reject from "../../phases/Reject.ts"
import type { Phase } from "../../phases/SmtpApp.ts"
import type * as Alarm from "../Alarm.ts"
import { PhaseRun, type Run } from "../MiddlewareChain.ts"
import type { PhaseHost } from "./Connections.ts"
import { phaseNames } from "./Facts.ts"
import type { Telemetry } from "./Telemetry.ts"
import type { ReplyError } from "./Hooks.ts"

/** The services a phase runs with: here already, or the Effect that builds them first. */
export type Inputs<I, R> = Context.Context<I> | Effect.Effect<Context.Context<I>, Reject.SmtpRejection, R>

/** The reply error for `rejection`. */
export const replyError = (rejection: Reject.SmtpRejection): ReplyError =>
  Object.assign(new Error(`${rejection.enhanced} ${rejection.message}`), { responseCode: rejection.code })

/** The reply for a phase that failed. */
export const replyFor = (cause: Cause.Cause<DataError>): ReplyError => replyError(rejectionFor(cause))

/** The rejection for a phase that failed: a `MessageTooLarge` left as it is gets the default `552 5.3.4`. */
export const rejectionFor = (cause: Cause.Cause<DataError>): Reject.SmtpRejection => {
  const rejection = Cause.findErrorOption(cause)
  if (Option.isSome(rejection)) return rejection.value._tag === "MessageTooLarge" ? Reject.tooBig : rejection.value
  return Cause.hasInterruptsOnly(cause) ? Reject.shuttingDown : Reject.internalError
}

/** The rejection a data handler failed with of its own accord: not the content's `verdict`, which its stream passed on. */
export const ownRejection = (exit: Exit.Exit<unknown, DataError>, verdict: Reject.SmtpRejection | undefined): Reject.SmtpRejection | undefined => {
  if (Exit.isSuccess(exit)) return undefined
  const error = Option.getOrUndefined(Cause.findErrorOption(exit.cause))
  return error?._tag === "SmtpRejection" && error !== verdict ? error : undefined
}

/** An answer to smtp-server: no error, or the reply for the failure. */
export const replyTo = (done: (error: ReplyError | null) => void) => (exit: Exit.Exit<unknown, DataError>): void =>
  Exit.isSuccess(exit) ? done(null) : done(replyFor(exit.cause))

const newRun = (): Run => ({ reached: 0, context: Context.empty(), keys: [], reply: undefined })

export class PhaseRunner<R> {
  private readonly services: Context.Context<R>
  private readonly timeouts: Readonly<Record<Phase, Duration.Duration>>
  private readonly alarm: Alarm.Alarm
  private readonly telemetry: Telemetry
  /** Per phase, the services the phase adds to the app's: the same for every run of it. */
  private readonly keys = new Map<Phase, ReadonlyArray<Context.Key<unknown, unknown>>>()

  constructor(services: Context.Context<R>, timeouts: Readonly<Record<Phase, Duration.Duration>>, alarm: Alarm.Alarm, telemetry: Telemetry) {
    this.services = services
    this.timeouts = timeouts
    this.alarm = alarm
    this.telemetry = telemetry
  }

  private keysOf(phase: Phase, inputs: Context.Context<never>): ReadonlyArray<Context.Key<unknown, unknown>> {
    // The same services every run, as the app's types say; checked, since a state layer could still differ.
    const known = this.keys.get(phase)
    if (known !== undefined && known.every((key) => Context.getOrUndefined(inputs, key) !== undefined)) return known
    const app = this.services.mapUnsafe
    const keys = [...inputs.mapUnsafe.keys()].filter((key) => !app.has(key)).map((key) => Context.Service<unknown>(key))
    this.keys.set(phase, keys)
    return keys
  }

  /** `context`, annotated for the logs with the connection and the phase. */
  private annotated<I>(record: PhaseHost, phase: Phase, context: Context.Context<I>): Context.Context<I> {
    return Context.add(context, References.CurrentLogAnnotations, {
      ...Context.get(context, References.CurrentLogAnnotations),
      sessionId: record.session.id,
      remoteAddress: record.session.remoteAddress,
      phase: phaseNames[phase]
    })
  }

  /** The context a run of `phase` starts in: its inputs, annotated for the logs and marked for the chain. */
  context<I>(record: PhaseHost, phase: Phase, inputs: Context.Context<I>, run: Run = newRun(), span = record.seen.run?.span): Context.Context<I> {
    // The phase's inputs are the same services each time (with other values): their annotations are made once.
    const annotations = record.annotations[phase]
    const annotated = annotations === undefined
      ? this.annotated(record, phase, inputs)
      : Context.add(inputs, References.CurrentLogAnnotations, annotations)
    record.annotations[phase] ??= Context.get(annotated, References.CurrentLogAnnotations)
    run.keys = this.keysOf(phase, inputs)
    // The phase's span, when tracing: the middleware's own spans nest under it.
    const context = Context.add(span === undefined ? annotated : Context.add(annotated, Tracer.ParentSpan, span), PhaseRun, run)
    run.context = context
    return context
  }

  /**
   * Runs `body` for `record` with the services `inputs` and calls `answer`
   * with its outcome and the success reply a middleware set, once (at once
   * if the phase completes at once). Returns the fiber while it runs.
   */
  run<A, E extends DataError, I>(
    record: PhaseHost,
    phase: Phase,
    inputs: Inputs<I, R>,
    body: Effect.Effect<A, E, I>,
    answer: (exit: Exit.Exit<A, NoInfer<E> | Reject.SmtpRejection>, reply: SmtpReply | undefined) => void
  ): Fiber.Fiber<A, E | Reject.SmtpRejection> | undefined {
    record.snapshot = undefined
    const run = newRun()
    const observed = this.telemetry.started(record, phase)
    const fiber = Effect.isEffect(inputs)
      ? Effect.runForkWith(this.annotated(record, phase, this.services))(
        Effect.flatMap(inputs, (ready) => Effect.setContext(body, this.context(record, phase, ready, run, observed.span)))
      )
      : Effect.runForkWith(this.context(record, phase, inputs, run, observed.span))(body)
    let timedOut = false
    const decide = (exit: Exit.Exit<A, E | Reject.SmtpRejection>): void => {
      if (timedOut) return answer(Exit.fail(Reject.timedOut), undefined)
      if (Exit.isFailure(exit)) {
        const defect = Cause.findDefect(exit.cause)
        if (Result.isSuccess(defect)) {
          this.telemetry.defect(record, phase, Cause.die(defect.success))
          return answer(Exit.fail(Reject.internalError), undefined)
        }
      }
      answer(exit, run.reply)
    }
    const settle = (exit: Exit.Exit<A, E | Reject.SmtpRejection>): void => {
      this.telemetry.settled(record, observed, exit)
      decide(exit)
      this.telemetry.finished(record, observed, exit)
    }
    const now = fiber.pollUnsafe()
    if (now !== undefined) return void settle(now)
    record.fibers.add(fiber)
    const cancel = this.alarm.after(this.timeouts[phase], () => {
      timedOut = true
      fiber.interruptUnsafe()
    })
    fiber.addObserver((exit) => {
      record.fibers.delete(fiber)
      cancel()
      settle(exit)
    })
    return fiber
  }
}
