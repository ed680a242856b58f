/**
 * The engine's log lines, through Effect's logger: smtp-server's own messages
 * at levels that keep per-command chatter out of Info, one line per rejected
 * command, and handler defects. The levels below the minimum are decided once,
 * when the server is built: a disabled level costs a call to an empty function.
 */
import type * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as LogLevel from "effect/LogLevel"
import * as References from "effect/References"
import { format } from "node:util"
import type { SMTPServerSession } from "smtp-server"
import type { Phase } from "../../phases/SmtpApp.ts"

/** smtp-server's levels, as Effect's. */
const smtpServerLevels = {
  trace: "Trace",
  debug: "Trace",
  info: "Debug",
  warn: "Warn",
  error: "Warn",
  fatal: "Error"
} as const satisfies Record<string, LogLevel.Severity>

/** A bunyan-style log method, as smtp-server calls it: a data object and a printf-style message, or the message alone. */
type LogFunction = (data?: Record<string, unknown> | string, template?: string, ...args: ReadonlyArray<unknown>) => void

const ignore: LogFunction = () => undefined

/** Logging for an engine whose fibers `run` starts with the app's services. */
export const make = (services: Context.Context<never>, run: (effect: Effect.Effect<void>) => Fiber.Fiber<void>) => {
  const minimum = Context.get(services, References.MinimumLogLevel)
  const enabled = (level: LogLevel.Severity) => !LogLevel.isLessThan(level, minimum)

  const smtpServerLine = (level: LogLevel.Severity): LogFunction =>
    enabled(level)
      ? (data, template, ...args) => {
        if (typeof data === "string") return smtpServerLine(level)({}, data, template, ...args)
        const fields = data ?? {}
        run(Effect.logWithLevel(level)(format(template ?? "", ...args)).pipe(
          Effect.annotateLogs({
            component: "smtp-server",
            ...(typeof fields["cid"] === "string" ? { sessionId: fields["cid"] } : {}),
            ...(typeof fields["host"] === "string" ? { remoteAddress: fields["host"] } : {}),
            ...(typeof fields["tnx"] === "string" ? { tnx: fields["tnx"] } : {})
          })
        ))
      }
      : ignore

  const onSession = (session: SMTPServerSession, effect: Effect.Effect<void>): void =>
    void run(Effect.annotateLogs(effect, { sessionId: session.id, remoteAddress: session.remoteAddress }))

  const infoEnabled = enabled("Info")
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
    /** A rejected command, whoever rejected it (a handler, the engine or smtp-server). */
    rejection: (session: SMTPServerSession, code: number, reply: string): void => {
      if (infoEnabled) onSession(session, Effect.logInfo("rejected", { code, reply }))
    },
    /** A handler failed with a defect. */
    defect: (session: SMTPServerSession, phase: Phase, cause: Cause.Cause<unknown>): void =>
      onSession(session, Effect.logError("handler failed", cause).pipe(Effect.annotateLogs("phase", phase))),
    /** A warning about a connection. */
    warning: (session: SMTPServerSession, message: string): void => onSession(session, Effect.logWarning(message))
  }
}

/** The engine's logging. */
export type Logging = ReturnType<typeof make>
