/**
 * The engine's log lines, through Effect's logger: one message per line, its
 * facts as annotations (so a logfmt or JSON line has one `message` key), and
 * smtp-server's own messages at levels that keep per-command chatter out of
 * Info. A client that resets its connection is Debug: it is what clients do.
 * The levels below the minimum are decided once, when the server is built: a
 * disabled line costs a call to an empty function.
 */
import type * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as LogLevel from "effect/LogLevel"
import * as References from "effect/References"
import { format } from "node:util"

/** smtp-server's levels, as Effect's. */
const smtpServerLevels = {
  trace: "Trace",
  debug: "Trace",
  info: "Debug",
  warn: "Warn",
  error: "Warn",
  fatal: "Error"
} as const satisfies Record<string, LogLevel.Severity>

/** Socket errors that mean the client went away: no fault of the server's, and no news. */
const CLIENT_GONE: ReadonlySet<unknown> = new Set(["ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH"])

/** The error is a client leaving abruptly. */
const isClientGone = (error: unknown): boolean =>
  typeof error === "object" && error !== null && "code" in error && CLIENT_GONE.has(error.code)

/** A line's facts: log annotations. */
export type Fields = Readonly<Record<string, string | number | boolean | undefined>>

/** A bunyan-style log method, as smtp-server calls it: a data object and a printf-style message, or the message alone. */
type LogFunction = (data?: Record<string, unknown> | string, template?: string, ...args: ReadonlyArray<unknown>) => void

type Line = (message: string, fields: Fields) => void

const ignore = () => undefined

/** The facts that are set. */
const defined = (fields: Fields): Record<string, string | number | boolean> => {
  const set: Record<string, string | number | boolean> = {}
  for (const key in fields) {
    const value = fields[key]
    if (value !== undefined) set[key] = value
  }
  return set
}

/** The facts of one of the engine's lines, which say it is the engine's. */
const engineFields = (fields: Fields) => ({ component: "effect-smtp", ...defined(fields) })

/** Logging for an engine whose fibers `run` starts with the app's services. */
export const make = (services: Context.Context<never>, run: (effect: Effect.Effect<void>) => Fiber.Fiber<void>) => {
  const minimum = Context.get(services, References.MinimumLogLevel)
  const enabled = (level: LogLevel.Severity) => !LogLevel.isLessThan(level, minimum)

  const line = (level: LogLevel.Severity): Line =>
    enabled(level) ? (message, fields) => void run(Effect.annotateLogs(Effect.logWithLevel(level)(message), engineFields(fields))) : ignore

  const smtpServerLine = (level: LogLevel.Severity): LogFunction =>
    enabled(level)
      ? (data, template, ...args) => {
        if (typeof data === "string") return smtpServerLine(level)({}, data, template, ...args)
        const fields = data ?? {}
        const error = fields["err"]
        const at = level === "Warn" && isClientGone(error) ? "Debug" : level
        if (!enabled(at)) return
        run(Effect.logWithLevel(at)(format(template ?? "", ...args)).pipe(
          Effect.annotateLogs(defined({
            component: "smtp-server",
            sessionId: typeof fields["cid"] === "string" ? fields["cid"] : undefined,
            // A socket's error carries its client's address (smtp-server's `_onError` puts it there).
            remoteAddress: typeof fields["host"] === "string"
              ? fields["host"]
              : typeof error === "object" && error !== null && "remoteAddress" in error && typeof error.remoteAddress === "string"
              ? error.remoteAddress
              : undefined,
            tnx: typeof fields["tnx"] === "string" ? fields["tnx"] : undefined
          }))
        ))
      }
      : ignore

  const errorLine = enabled("Error")
  return {
    /** smtp-server's logger. */
    smtpServer: {
      trace: smtpServerLine(smtpServerLevels.trace),
      debug: smtpServerLine(smtpServerLevels.debug),
      info: smtpServerLine(smtpServerLevels.info),
      warn: smtpServerLine(smtpServerLevels.warn),
      error: smtpServerLine(smtpServerLevels.error),
      fatal: smtpServerLine(smtpServerLevels.fatal)
    },
    /** Whether Info lines are written: a line's facts need not be gathered otherwise. */
    infoEnabled: enabled("Info"),
    info: line("Info"),
    warning: line("Warn"),
    /** A line with the Cause of a failure. */
    error: (message: string, cause: Cause.Cause<unknown>, fields: Fields): void => {
      if (errorLine) run(Effect.annotateLogs(Effect.logError(message, cause), engineFields(fields)))
    }
  }
}

/** The engine's logging. */
export type Logging = ReturnType<typeof make>
