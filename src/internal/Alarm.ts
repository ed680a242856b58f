/**
 * Deadlines on Effect's Clock, any number of them, with one sleeping fiber
 * due at the earliest: the engine times every handler, command line, message
 * and TLS handshake without a timer each. On the app's Clock, so `TestClock`
 * drives them in tests.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"

/** Cancels a deadline; nothing happens if it has expired already. */
export type Cancel = () => void

export interface Alarm {
  /** The Clock's time, in milliseconds. */
  readonly now: () => number
  /** Runs `onExpire` at `time` (the Clock's milliseconds) unless cancelled first. */
  readonly at: (time: number, onExpire: () => void) => Cancel
  /** Runs `onExpire` once `duration` has passed unless cancelled first. */
  readonly after: (duration: Duration.Duration, onExpire: () => void) => Cancel
}

interface Deadline {
  readonly at: number
  readonly expire: () => void
}

/** An alarm whose fiber `run` starts (with the app's services); it stops when the calling scope closes. */
export const make = Effect.fnUntraced(function*(run: (effect: Effect.Effect<void>) => Fiber.Fiber<void>) {
  const clock = yield* Clock.Clock
  const deadlines = new Set<Deadline>()
  let alarm: { readonly at: number; readonly fiber: Fiber.Fiber<void> } | undefined
  const set = (at: number): void => {
    alarm?.fiber.interruptUnsafe()
    const fiber = run(Effect.sleep(Duration.millis(Math.max(0, at - clock.currentTimeMillisUnsafe()))))
    alarm = { at, fiber }
    fiber.addObserver((exit) => {
      if (alarm?.fiber === fiber) alarm = undefined
      if (Exit.isSuccess(exit)) expireDue()
    })
  }
  const expireDue = (): void => {
    const now = clock.currentTimeMillisUnsafe()
    let next = Number.POSITIVE_INFINITY
    for (const deadline of deadlines) {
      if (deadline.at > now) next = Math.min(next, deadline.at)
      else {
        deadlines.delete(deadline)
        deadline.expire()
      }
    }
    if (next !== Number.POSITIVE_INFINITY) set(next)
  }
  // The alarm is left to go off when nothing is left to time (it then finds nothing and stops): stopping and
  // restarting it whenever the engine is idle for a moment would cost a timer per command again.
  const at = (time: number, onExpire: () => void): Cancel => {
    if (!Number.isFinite(time)) return () => undefined
    const deadline: Deadline = { at: time, expire: onExpire }
    deadlines.add(deadline)
    if (alarm === undefined || alarm.at > time) set(time)
    return () => void deadlines.delete(deadline)
  }
  // Its timer would keep the process up after the server closed.
  yield* Effect.addFinalizer(() => Effect.sync(() => alarm?.fiber.interruptUnsafe()))
  return {
    now: () => clock.currentTimeMillisUnsafe(),
    at,
    after: (duration, onExpire) => at(clock.currentTimeMillisUnsafe() + Duration.toMillis(duration), onExpire)
  } satisfies Alarm
})
