/**
 * Failure injection, for testing the clients that send to this server:
 * `app.pipe(failureInjection([{ phase: "rcptTo", reply: Reject.temporary(452, "4.2.2", "Mailbox full"), when: { recipient: /^full-/ } }]))`.
 *
 * Each rule answers `reply` in its phase, instead of letting the command
 * through: `always` (the default); for a share of the commands
 * (`{ percent: 10 }`, from a generator seeded with `seed` when one is given, so
 * a run can be repeated; otherwise from Effect's `Random`); or, at RCPT and
 * DATA, when a recipient's address matches `recipient`. The first rule of a
 * phase that fires answers. A `421` at connect or later closes the
 * connection, as a real server's would.
 */
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import type * as Reject from "../phases/Reject.ts"
import * as SmtpApp from "../phases/SmtpApp.ts"
import { Message, RcptTo } from "../services/PhaseInput.ts"

/** A share of the commands, 0 to 100 percent: the same sequence for the same seed. */
export interface Percent {
  readonly percent: number
  readonly seed?: string
}

/** Every phase that answers the client, and when its rule fires. */
export type Rule =
  | { readonly phase: "connect" | "mailFrom" | "rcptTo" | "data"; readonly reply: Reject.SmtpRejection; readonly when?: "always" | Percent }
  | { readonly phase: "rcptTo" | "data"; readonly reply: Reject.SmtpRejection; readonly when: { readonly recipient: RegExp } }

// Whether a rule fires for a command, given the recipients it concerns (none before RCPT).
type Fires = (recipients: ReadonlyArray<string>) => Effect.Effect<boolean>

const trigger = (rule: Rule): Fires => {
  const when = rule.when ?? "always"
  if (when === "always") return () => Effect.succeed(true)
  if ("recipient" in when) {
    // `search`, unlike `test`, keeps no state between calls in a `g` or `y` pattern.
    const pattern = when.recipient
    return (recipients) => Effect.succeed(recipients.some((address) => address.search(pattern) !== -1))
  }
  // One generator for the rule's life, so its draws continue one seeded sequence.
  const seeded = when.seed === undefined ? undefined : Effect.runSync(Random.withSeed(Effect.gen(function*() { return yield* Random.Random }), when.seed))
  const draw = seeded === undefined ? Random.next : Effect.sync(() => seeded.nextDoubleUnsafe())
  return () => Effect.map(draw, (value) => value * 100 < when.percent)
}

export const failureInjection = (rules: ReadonlyArray<Rule>) => {
  // A phase's rules as one middleware: the first that fires answers its reply.
  const inject = (phase: Rule["phase"]) => {
    const active = rules.filter((rule) => rule.phase === phase).map((rule) => ({ reply: rule.reply, fires: trigger(rule) }))
    const middleware = (recipients: ReadonlyArray<string>) => <A, E>(next: Effect.Effect<A, E>): Effect.Effect<A, E | Reject.SmtpRejection> =>
      Effect.gen(function*() {
        for (const rule of active) {
          if (yield* rule.fires(recipients)) return yield* rule.reply
        }
        return yield* next
      })
    return { active: active.length > 0, middleware }
  }
  const connect = inject("connect")
  const mailFrom = inject("mailFrom")
  const rcptTo = inject("rcptTo")
  const data = inject("data")
  return <Cs, Ts, R, U extends SmtpApp.UserKey>(app: SmtpApp.SmtpApp<Cs, Ts, R, U>): SmtpApp.SmtpApp<Cs, Ts, R, U> => {
    const a = connect.active ? app.pipe(SmtpApp.onConnect(connect.middleware([]))) : app
    const b = mailFrom.active ? a.pipe(SmtpApp.onMailFrom(mailFrom.middleware([]))) : a
    const c = rcptTo.active ? b.pipe(SmtpApp.onRcptTo((next) => RcptTo.use(({ address }) => rcptTo.middleware([address])(next)))) : b
    return data.active
      ? c.pipe(SmtpApp.onData((next) => Message.use(({ envelope }) => data.middleware(envelope.rcptTo.map((rcpt) => rcpt.address))(next))))
      : c
  }
}
