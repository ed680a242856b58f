/**
 * What the engine tells operators, at each event of a connection: log lines
 * (`Logging`), metrics (`SmtpMetrics`), spans and the session transcript.
 *
 * A connection has a span (`smtp.connection`) and each run of a phase a child
 * span (`smtp.mail_from`, …) that the phase's middleware spans nest under.
 * A phase span ends with the reply to its command, so it carries the reply as
 * the client read it; a phase without a reply (secure, close) ends with its
 * run. Spans are made only when the app's context has a tracer other than
 * Effect's native one (which exports nothing): otherwise they cost nothing.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as References from "effect/References"
import * as Tracer from "effect/Tracer"
import type { SMTPServerSession } from "smtp-server"
import type { Settings } from "../../layers/SmtpServerConfig.ts"
import * as SmtpMetrics from "../../layers/SmtpMetrics.ts"
import type * as Reject from "../../phases/Reject.ts"
import type { Phase } from "../../phases/SmtpApp.ts"
import type { TranscriptLine } from "../../services/SmtpSession.ts"
import type { Connection } from "./Hooks.ts"
import { addressIn, ENHANCED, heloOf, phaseNames, phaseOfVerb, replyLine, tlsOf, userOf } from "./Facts.ts"
import * as Logging from "./Logging.ts"

/** A failed reply, as a span's exit sees it. */
class SmtpReplyError extends Error {
  override readonly name = "SmtpReplyError"
}

/** What telemetry keeps for a connection. */
export interface Seen {
  /** When smtp-server made the connection ready for its greeting (a port probe gone before never is). */
  openedAt: number | undefined
  /** The connection's span, when tracing. */
  span: Tracer.Span | undefined
  /** The span of the phase being run and answered, when tracing. */
  phaseSpan: Tracer.Span | undefined
  /** The phase whose command is being handled, from the start of its run to its reply. */
  phase: SmtpMetrics.PhaseName | undefined
  /** Who decided the next rejection: the app's middleware, or the engine (smtp-server, the policy, the guard). */
  by: "app" | "engine"
  /** The id the data phase named the message by (`Accept.queued`). */
  queueId: string | undefined
  /** The last message's size, and the message bytes of the connection. */
  size: number
  bytes: number
  /** The user name of the AUTH being tried. */
  attempt: string | undefined
  /** The commands and replies, with the `transcript` setting. */
  readonly transcript: Array<TranscriptLine> | undefined
}

/** What telemetry reads of a connection. */
export interface Observed {
  readonly session: SMTPServerSession
  readonly connection: Connection
  readonly seen: Seen
  readonly started: number
  readonly messages: number
}

/** A run of a phase: when it started (for its duration), or -1 without metrics. */
export type RunStart = number


/** The engine's telemetry, with the app's services (its logger, metric registry and tracer). */
export class Telemetry {
  readonly logging: Logging.Logging
  /** The context metrics are updated in, unless the `metrics` setting is off. */
  private readonly metrics: Context.Context<never> | undefined
  private readonly tracer: Tracer.Tracer | undefined
  private readonly clock: Clock.Clock
  private readonly transcript: boolean

  constructor(services: Context.Context<never>, settings: Settings, run: (effect: Effect.Effect<void>) => Fiber.Fiber<void>) {
    this.logging = Logging.make(services, run)
    this.metrics = settings.metrics ? services : undefined
    // The series with a fixed set of labels are there from the start, at zero: a dashboard needs no first event.
    const counters = [SmtpMetrics.connectionsOpened, SmtpMetrics.messagesAccepted, SmtpMetrics.receivedBytes, SmtpMetrics.connectionsActive]
    const labelled = [SmtpMetrics.tlsSessions("starttls"), SmtpMetrics.tlsSessions("implicit"), SmtpMetrics.authAttempts("success"), SmtpMetrics.authAttempts("failure")]
    if (this.metrics !== undefined) for (const metric of [...counters, ...labelled]) metric.modifyUnsafe(0, this.metrics)
    const tracer = Context.get(services, Tracer.Tracer)
    this.tracer = tracer !== Tracer.nativeTracer && Context.get(services, References.TracerEnabled) ? tracer : undefined
    this.clock = Context.get(services, Clock.Clock)
    this.transcript = settings.transcript
  }

  /** A new connection's telemetry state. */
  connection(): Seen {
    return {
      openedAt: undefined,
      span: undefined,
      phaseSpan: undefined,
      phase: undefined,
      by: "engine",
      queueId: undefined,
      size: 0,
      bytes: 0,
      attempt: undefined,
      transcript: this.transcript ? [] : undefined
    }
  }

  private count(metric: { readonly updateUnsafe: (input: number, context: Context.Context<never>) => void }, by = 1): void {
    if (this.metrics !== undefined) metric.updateUnsafe(by, this.metrics)
  }

  private span(name: string, parent: Tracer.Span | undefined, attributes: Readonly<Record<string, unknown>>): Tracer.Span | undefined {
    if (this.tracer === undefined) return undefined
    const span = this.tracer.span({
      name,
      parent: parent === undefined ? Option.none() : Option.some(parent),
      annotations: Context.empty(),
      links: [],
      startTime: this.clock.currentTimeNanosUnsafe(),
      kind: parent === undefined ? "server" : "internal",
      root: parent === undefined,
      sampled: true
    })
    for (const key in attributes) span.attribute(key, attributes[key])
    return span
  }

  private end(span: Tracer.Span | undefined, exit: Exit.Exit<unknown, unknown>): void {
    if (span !== undefined && span.status._tag === "Started") span.end(this.clock.currentTimeNanosUnsafe(), exit)
  }

  /** The client's facts, for log lines and spans. */
  private client(session: SMTPServerSession) {
    return { sessionId: session.id, remoteAddress: session.remoteAddress }
  }

  /** The connection is ready for its greeting: its addresses are known. */
  opened(record: Observed): void {
    const session = record.session
    record.seen.openedAt = Date.now()
    this.count(SmtpMetrics.connectionsOpened)
    if (this.metrics !== undefined) SmtpMetrics.connectionsActive.modifyUnsafe(1, this.metrics)
    record.seen.span = this.span("smtp.connection", undefined, {
      "smtp.session.id": session.id,
      "client.address": session.remoteAddress,
      "client.port": session.remotePort,
      "server.address": session.localAddress,
      "server.port": session.localPort,
      "network.transport": "tcp"
    })
    if (this.logging.infoEnabled) this.logging.info("connection opened", { ...this.client(session), remotePort: session.remotePort, localPort: session.localPort })
  }

  /** A connection a limit refused, before smtp-server took it. */
  refused(client: string, rejection: Reject.SmtpRejection): void {
    const replyClass = rejection.code >= 500 ? "5xx" : "4xx"
    if (this.metrics !== undefined) SmtpMetrics.rejections("connect", replyClass, rejection.enhanced).updateUnsafe(1, this.metrics)
    this.logging.info("connection refused", {
      remoteAddress: client,
      phase: "connect",
      reply: rejection.line,
      code: rejection.code,
      enhanced: rejection.enhanced,
      by: "engine"
    })
  }

  /** A run of `phase` starts. */
  started(record: Observed, phase: Phase): RunStart {
    const seen = record.seen
    const name = phaseNames[phase]
    seen.phase = name
    if (this.tracer !== undefined) {
      this.end(seen.phaseSpan, Exit.void)
      seen.phaseSpan = this.span(`smtp.${name}`, seen.span, {
        "smtp.session.id": record.session.id,
        "client.address": record.session.remoteAddress,
        "client.port": record.session.remotePort
      })
    }
    return this.metrics === undefined ? -1 : performance.now()
  }

  /** A run of `phase` has ended with `exit`, about to be answered. */
  settled(record: Observed, phase: Phase, start: RunStart, exit: Exit.Exit<unknown, unknown>): void {
    if (start >= 0) this.count(SmtpMetrics.phaseDuration(phaseNames[phase]), (performance.now() - start) / 1000)
    // A typed failure is the app's verdict; where the message's reply comes later, the data phase says whose it is.
    if (Exit.isFailure(exit) && Cause.hasFails(exit.cause)) record.seen.by = "app"
  }

  /** A run of `phase` has been answered (its reply ended its span), or has no reply to wait for (secure, close). */
  finished(record: Observed, phase: Phase, exit: Exit.Exit<unknown, unknown>): void {
    const seen = record.seen
    if (phase === "data" || seen.phaseSpan === undefined) return
    if (phase === "secure") seen.phaseSpan.attribute("tls.protocol.version", tlsOf(record.session))
    this.end(seen.phaseSpan, exit)
    seen.phaseSpan = undefined
    seen.phase = undefined
  }

  /** A handler failed with a defect: answered `451 4.3.0`. */
  defect(record: Observed, phase: Phase, cause: Cause.Cause<unknown>): void {
    this.count(SmtpMetrics.defects(phaseNames[phase]))
    record.seen.phaseSpan?.attribute("error.type", "defect")
    this.logging.error("handler failed", cause, { ...this.client(record.session), phase: phaseNames[phase] })
  }

  /** A command line (credentials redacted). */
  received(record: Observed, line: string): void {
    record.seen.transcript?.push({ from: "client", line })
  }

  /** A message's bytes were all read (or the client left): `size` of them. */
  message(record: Observed, size: number): void {
    record.seen.size = size
    record.seen.bytes += size
    this.count(SmtpMetrics.receivedBytes, size)
  }

  /** A TLS session is up: by STARTTLS, or (before any command) on an implicit TLS port. */
  secured(record: Observed): void {
    this.count(SmtpMetrics.tlsSessions(record.connection.command === "" ? "implicit" : "starttls"))
    record.seen.span?.attribute("tls.protocol.version", tlsOf(record.session))
  }

  /** `run()`, a run of `phase` outside the runner (the close phase's), timed and traced as the runner's are. */
  traced<A, E, R>(record: Observed, phase: Phase, run: () => Effect.Effect<A, E, R>): Effect.Effect<A, E, R> {
    return Effect.suspend(() => {
      const start = this.started(record, phase)
      return Effect.onExit(run(), (exit) =>
        Effect.sync(() => {
          this.settled(record, phase, start, exit)
          this.finished(record, phase, exit)
        }))
    })
  }

  /** A reply was sent: its code, the enhanced code smtp-server put after it ("" for none) and its text. */
  replied(record: Observed, code: number, added: string, text: string | ReadonlyArray<string>, verb: string): void {
    const seen = record.seen
    seen.transcript?.push({ from: "server", line: replyLine(code, added, text) })
    // Intermediate replies (354, 334) are not answers.
    if (code < 200 || (code >= 300 && code < 400)) return
    const first = typeof text === "string" ? text : text[0] ?? ""
    if (code >= 400) this.rejected(record, code, added === "" ? ENHANCED.exec(first)?.[1] : added, replyLine(code, added, first), verb)
    else if (code === 250 && verb === "DATA") this.accepted(record, code, added, first)
    else if (code === 235) {
      this.count(SmtpMetrics.authAttempts("success"))
      this.logging.info("authenticated", { ...this.client(record.session), user: seen.attempt })
    }
    const span = seen.phaseSpan
    if (span !== undefined) {
      span.attribute("smtp.reply.code", code)
      const enhanced = added === "" ? ENHANCED.exec(first)?.[1] : added
      if (enhanced !== undefined) span.attribute("smtp.reply.enhanced_code", enhanced)
      const address = seen.phase === "mail_from" || seen.phase === "rcpt_to" ? addressIn(record.connection.command) : undefined
      if (address !== undefined) span.attribute(`smtp.${seen.phase}`, address)
      const helo = heloOf(record.session)
      if (helo !== undefined) span.attribute("smtp.helo", helo)
      this.end(span, code >= 400 ? Exit.fail(new SmtpReplyError(replyLine(code, added, first))) : Exit.void)
      seen.phaseSpan = undefined
    } else if (code >= 400) {
      seen.span?.event("smtp.rejection", this.clock.currentTimeNanosUnsafe(), { "smtp.reply.code": code, "smtp.command": verb })
    }
    seen.phase = undefined
    seen.by = "engine"
    seen.queueId = undefined
  }

  private rejected(record: Observed, code: number, enhanced: string | undefined, reply: string, verb: string): void {
    const session = record.session
    const seen = record.seen
    const command = record.connection.command
    const phase = seen.phase ?? phaseOfVerb(verb, command)
    if (this.metrics !== undefined) SmtpMetrics.rejections(phase, code >= 500 ? "5xx" : "4xx", enhanced ?? "none").updateUnsafe(1, this.metrics)
    if (phase === "auth" && code !== 421) this.count(SmtpMetrics.authAttempts("failure"))
    // An answer to a client that has gone (its handler interrupted) is not a rejection worth a line.
    if (record.connection.ended && code !== 421) return
    // smtp-server makes the envelope when the connection is ready: a refusal can come before.
    const envelope: SMTPServerSession["envelope"] | undefined = session.envelope
    const sender = envelope?.mailFrom ? envelope.mailFrom.address : verb === "MAIL" ? addressIn(command) : undefined
    this.logging.info("command rejected", {
      ...this.client(session),
      phase,
      command: verb === "" ? undefined : verb,
      sender,
      recipient: verb === "RCPT" ? addressIn(command) : undefined,
      recipients: verb === "DATA" ? envelope?.rcptTo.length : undefined,
      user: phase === "auth" ? seen.attempt : userOf(session),
      reply,
      code,
      enhanced,
      by: seen.by
    })
  }

  private accepted(record: Observed, code: number, added: string, text: string): void {
    const session = record.session
    const seen = record.seen
    this.count(SmtpMetrics.messagesAccepted)
    this.count(SmtpMetrics.messageSize, seen.size)
    const span = seen.phaseSpan
    if (span === undefined && !this.logging.infoEnabled) return
    const sender = session.envelope.mailFrom ? session.envelope.mailFrom.address : ""
    const recipients = session.envelope.rcptTo.length
    if (span !== undefined) {
      span.attribute("smtp.mail_from", sender)
      span.attribute("smtp.rcpt_count", recipients)
      span.attribute("smtp.message.size", seen.size)
    }
    const reply = replyLine(code, added, text)
    this.logging.info("message accepted", {
      ...this.client(session),
      id: seen.queueId,
      transaction: record.started,
      sender,
      recipients,
      size: seen.size,
      tls: tlsOf(session),
      user: userOf(session),
      helo: heloOf(session),
      reply
    })
  }

  /** The connection's close phase has run: its last line, and its span ends. */
  closed(record: Observed): void {
    const session = record.session
    const seen = record.seen
    const openedAt = seen.openedAt
    if (openedAt === undefined) return
    if (this.metrics !== undefined) SmtpMetrics.connectionsActive.modifyUnsafe(-1, this.metrics)
    // A phase the client did not wait for.
    this.end(seen.phaseSpan, Exit.interrupt())
    seen.phaseSpan = undefined
    const span = seen.span
    if (span !== undefined) {
      span.attribute("smtp.transactions", record.started)
      span.attribute("smtp.messages", record.messages)
      const helo = heloOf(session)
      if (helo !== undefined) span.attribute("smtp.helo", helo)
      const user = userOf(session)
      if (user !== undefined) span.attribute("enduser.id", user)
      this.end(span, Exit.void)
    }
    if (!this.logging.infoEnabled) return
    this.logging.info("connection closed", {
      ...this.client(session),
      durationMs: Date.now() - openedAt,
      transactions: record.started,
      messages: record.messages,
      bytes: seen.bytes,
      tls: tlsOf(session),
      user: userOf(session),
      helo: heloOf(session)
    })
  }
}
