/**
 * What the engine tells operators, at each event of a connection: log lines
 * (`Logging`), metrics (`SmtpMetrics`), spans and the session transcript.
 *
 * A connection has a span (`smtp.connection`) and each run of a phase a child
 * span (`smtp.mail_from`, …) that the phase's middleware spans nest under.
 * A phase span ends with the reply to its command, so it carries the reply as
 * the client read it; a phase without a reply (secure, close) ends with its
 * run, and one whose client left, as interrupted. Spans are made only when
 * the app's context has a tracer other than Effect's native one (which
 * exports nothing): otherwise they cost nothing.
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
import type * as SmtpMetrics from "../../layers/SmtpMetrics.ts"
import * as Reject from "../../phases/Reject.ts"
import type { Phase } from "../../phases/SmtpApp.ts"
import type { Connection } from "./Hooks.ts"
import { addressIn, ENHANCED, heloOf, phaseNames, phaseOfVerb, replyLine, tlsOf, userOf } from "./Facts.ts"
import * as Logging from "./Logging.ts"
import * as MetricSeries from "./MetricSeries.ts"
import * as Transcript from "./Transcript.ts"
import type { PhaseRun, Seen } from "./Connections.ts"

/** A failed reply, as a span's exit sees it. */
class SmtpReplyError extends Error {
  override readonly name = "SmtpReplyError"
}

/** What telemetry reads of a connection. */
export interface Observed {
  readonly session: SMTPServerSession
  readonly connection: Connection
  readonly seen: Seen
  readonly started: number
  readonly messages: number
}

/** The client a span or line is about. */
interface Client {
  readonly id: string
  readonly remoteAddress: string
  readonly remotePort: number
}

/** The engine's telemetry, with the app's services (its logger, metric registry and tracer). */
export class Telemetry {
  readonly logging: Logging.Logging
  /** The series of the app's metric registry, unless the `metrics` setting is off. */
  private readonly metrics: MetricSeries.MetricSeries | undefined
  private readonly tracer: Tracer.Tracer | undefined
  private readonly clock: Clock.Clock
  private readonly transcript: boolean

  constructor(services: Context.Context<never>, settings: Settings, run: (effect: Effect.Effect<void>) => Fiber.Fiber<void>) {
    this.logging = Logging.make(services, run)
    this.metrics = settings.metrics ? MetricSeries.of(services) : undefined
    const tracer = Context.get(services, Tracer.Tracer)
    this.tracer = tracer !== Tracer.nativeTracer && Context.get(services, References.TracerEnabled) ? tracer : undefined
    this.clock = Context.get(services, Clock.Clock)
    this.transcript = settings.transcript
  }

  /** A new connection's telemetry state. */
  connection(): Seen {
    return {
      openedAt: undefined,
      implicitTls: false,
      span: undefined,
      run: undefined,
      by: "engine",
      queueId: undefined,
      size: 0,
      bytes: 0,
      attempt: undefined,
      transcript: this.transcript ? Transcript.make() : undefined
    }
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

  /** The client's facts, for log lines. */
  private client(session: SMTPServerSession) {
    return { sessionId: session.id, remoteAddress: session.remoteAddress }
  }

  /** The connection is ready for its greeting: its addresses are known. */
  opened(record: Observed): void {
    const session = record.session
    record.seen.openedAt = Date.now()
    record.seen.implicitTls = session.secure
    if (this.metrics !== undefined) {
      this.metrics.connectionsOpened.value++
      this.metrics.connectionsActive.value++
    }
    record.seen.span = this.span("smtp.connection", undefined, {
      "smtp.session.id": session.id,
      "client.address": session.remoteAddress,
      "client.port": session.remotePort,
      "server.address": session.localAddress,
      "server.port": session.localPort,
      "network.transport": "tcp"
    })
    if (!this.logging.infoEnabled) return
    this.logging.info("connection opened", { ...this.client(session), remotePort: session.remotePort, localPort: session.localPort })
  }

  /** A connection a limit refused before smtp-server took it: `answered` with the rejection, or dropped. */
  refused(client: string, rejection: Reject.SmtpRejection, answered: boolean): void {
    const replyClass = rejection.code >= 500 ? "5xx" : "4xx"
    if (this.metrics !== undefined) this.metrics.rejections("connect", replyClass, rejection.enhanced).value++
    this.logging.info("connection refused", {
      remoteAddress: client,
      phase: "connect",
      reply: answered ? rejection.line : undefined,
      code: rejection.code,
      enhanced: rejection.enhanced,
      by: "engine"
    })
  }

  /** A run of `phase` starts, for `client` (the connection's, or the proxy's a handover ends). */
  started(record: Observed, phase: Phase, client: Client = record.session): PhaseRun {
    const name = phaseNames[phase]
    const span = this.tracer === undefined ? undefined : this.span(`smtp.${name}`, record.seen.span, {
      "smtp.session.id": client.id,
      "client.address": client.remoteAddress,
      "client.port": client.remotePort
    })
    const run: PhaseRun = { name, start: this.metrics === undefined ? -1 : performance.now(), span }
    record.seen.run = run
    return run
  }

  /** A run has ended with `exit`, about to be answered. */
  settled(record: Observed, run: PhaseRun, exit: Exit.Exit<unknown, unknown>): void {
    if (run.start >= 0) this.metrics?.phaseDuration(run.name).observe((performance.now() - run.start) / 1000)
    if (Exit.isSuccess(exit)) return
    // A typed failure is the app's verdict, except the engine's own limit on failed logins; where the message's
    // reply comes later, the data phase says whose it is.
    const error = Cause.findErrorOption(exit.cause)
    if (Option.isNone(error)) return
    record.seen.by = error.value === Reject.tooManyAuthFailures ? "engine" : "app"
    // The app's auth chain refused the credentials (or the limit of failures was reached).
    if (run.name === "auth" && this.metrics !== undefined) this.metrics.authAttempts.failure.value++
  }

  /** A run has been answered (its reply ended its span), or has no reply to wait for (secure, close). */
  finished(record: Observed, run: PhaseRun, exit: Exit.Exit<unknown, unknown>): void {
    // The reply to a message comes once it is drained.
    if (run.name === "data") return
    if (run.name === "secure") run.span?.attribute("tls.protocol.version", tlsOf(record.session))
    this.end(run.span, exit)
    if (record.seen.run === run) record.seen.run = undefined
  }

  /**
   * `body()`, a run of `phase` outside the runner (a close phase's, the proxy's before a handover), timed and
   * traced as the runner's are; the run it interrupts, if any, is the connection's again after it.
   */
  traced<A, E, R>(record: Observed, phase: Phase, body: () => Effect.Effect<A, E, R>, client: Client = record.session): Effect.Effect<A, E, R> {
    return Effect.suspend(() => {
      const previous = record.seen.run
      const run = this.started(record, phase, client)
      return Effect.onExit(body(), (exit) =>
        Effect.sync(() => {
          this.settled(record, run, exit)
          if (Exit.isFailure(exit) && Cause.hasDies(exit.cause)) this.defect(record, phase, exit.cause)
          this.finished(record, run, exit)
          if (record.seen.run === undefined) record.seen.run = previous
        }))
    })
  }

  /** A handler failed with a defect: answered `451 4.3.0`, or (at close) logged only. */
  defect(record: Observed, phase: Phase, cause: Cause.Cause<unknown>): void {
    if (this.metrics !== undefined) this.metrics.defects(phaseNames[phase]).value++
    record.seen.run?.span?.attribute("error.type", "defect")
    this.logging.error("handler failed", cause, { ...this.client(record.session), phase: phaseNames[phase] })
  }

  /** A close phase failed: a defect has its line already (`traced`), a rejection or a timeout gets one here. */
  closeFailed(cause: Cause.Cause<unknown>): Effect.Effect<void> {
    return Cause.hasDies(cause) ? Effect.void : Effect.annotateLogs(Effect.logWarning("close handler failed", cause), "component", "effect-smtp")
  }

  /** A command line: in the transcript, credentials redacted. */
  received(record: Observed, line: Buffer, sasl: boolean): void {
    if (record.seen.transcript !== undefined) Transcript.client(record.seen.transcript, line, sasl)
  }

  /** A message's bytes were all read (or the client left): `size` of them. */
  message(record: Observed, size: number): void {
    record.seen.size = size
    record.seen.bytes += size
    if (this.metrics !== undefined) this.metrics.receivedBytes.value += size
  }

  /** A TLS session is up: by STARTTLS, or on an implicit TLS port. */
  secured(record: Observed): void {
    if (this.metrics !== undefined) this.metrics.tlsSessions[record.seen.implicitTls ? "implicit" : "starttls"].value++
    record.seen.span?.attribute("tls.protocol.version", tlsOf(record.session))
  }

  /** A reply to `verb`: its code, the enhanced code smtp-server put after it ("" for none) and its text. */
  replied(record: Observed, code: number, added: string, text: string | ReadonlyArray<string>, verb: string, gone: boolean): void {
    const seen = record.seen
    const run = seen.run
    // Nothing was said to a client that has gone: its phase was interrupted. A message it sent whole was stored.
    if (gone) {
      if (code === 250 && verb === "DATA") this.accepted(record, code, added, typeof text === "string" ? text : text[0] ?? "")
      this.end(run?.span, Exit.interrupt())
      seen.run = undefined
      return
    }
    if (seen.transcript !== undefined) Transcript.server(seen.transcript, code, added, text)
    // Intermediate replies (354, 334) are not answers.
    if (code < 200 || (code >= 300 && code < 400)) return
    const first = typeof text === "string" ? text : text[0] ?? ""
    const span = run?.span
    // The enhanced code only a rejection's line and a span need: an app's reply carries it in its text.
    const enhanced = code < 400 && span === undefined ? undefined : added === "" ? ENHANCED.exec(first)?.[1] : added
    if (code >= 400) this.rejected(record, run?.name ?? phaseOfVerb(verb), code, added, enhanced, first, verb)
    else if (code === 250 && verb === "DATA") this.accepted(record, code, added, first)
    else if (code === 235) {
      if (this.metrics !== undefined) this.metrics.authAttempts.success.value++
      this.logging.info("authenticated", { ...this.client(record.session), user: seen.attempt })
    }
    if (span !== undefined) this.answered(record, span, code, enhanced, replyLine(code, added, first))
    else if (code >= 400) {
      seen.span?.event("smtp.rejection", this.clock.currentTimeNanosUnsafe(), { "smtp.reply.code": code, "smtp.command": verb })
    }
    seen.run = undefined
    seen.by = "engine"
    seen.queueId = undefined
  }

  /** A phase's span gets its reply, and ends. */
  private answered(record: Observed, span: Tracer.Span, code: number, enhanced: string | undefined, reply: string): void {
    const session = record.session
    const name = record.seen.run?.name
    span.attribute("smtp.reply.code", code)
    if (enhanced !== undefined) span.attribute("smtp.reply.enhanced_code", enhanced)
    const helo = heloOf(session)
    if (helo !== undefined) span.attribute("smtp.helo", helo)
    if (name === "mail_from" || name === "rcpt_to") span.attribute(`smtp.${name}`, addressIn(record.connection.command) ?? "")
    // smtp-server's envelope is there until the reply to the message has been sent.
    if (name === "data") {
      span.attribute("smtp.mail_from", session.envelope.mailFrom ? session.envelope.mailFrom.address : "")
      span.attribute("smtp.rcpt_count", session.envelope.rcptTo.length)
      span.attribute("smtp.message.size", record.seen.size)
    }
    this.end(span, code >= 400 ? Exit.fail(new SmtpReplyError(reply)) : Exit.void)
  }

  private rejected(
    record: Observed,
    phase: SmtpMetrics.PhaseName,
    code: number,
    added: string,
    enhanced: string | undefined,
    text: string,
    verb: string
  ): void {
    const session = record.session
    const seen = record.seen
    if (this.metrics !== undefined) this.metrics.rejections(phase, code >= 500 ? "5xx" : "4xx", enhanced ?? "none").value++
    if (!this.logging.infoEnabled) return
    const command = record.connection.command
    // smtp-server makes the envelope when the connection is ready: a refusal can come before.
    const envelope: SMTPServerSession["envelope"] | undefined = session.envelope
    const sender = verb === "MAIL" ? addressIn(command) : envelope?.mailFrom ? envelope.mailFrom.address : undefined
    this.logging.info("command rejected", {
      ...this.client(session),
      phase,
      command: verb === "" ? undefined : verb,
      sender,
      recipient: verb === "RCPT" ? addressIn(command) : undefined,
      recipients: verb === "DATA" ? envelope?.rcptTo.length : undefined,
      user: phase === "auth" ? seen.attempt : userOf(session),
      reply: replyLine(code, added, text),
      code,
      enhanced,
      by: seen.by
    })
  }

  private accepted(record: Observed, code: number, added: string, text: string): void {
    const session = record.session
    const seen = record.seen
    if (this.metrics !== undefined) {
      this.metrics.messagesAccepted.value++
      this.metrics.messageSize.observe(seen.size)
    }
    if (!this.logging.infoEnabled) return
    this.logging.info("message accepted", {
      ...this.client(session),
      id: seen.queueId,
      transaction: record.started,
      sender: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
      recipients: session.envelope.rcptTo.length,
      size: seen.size,
      tls: tlsOf(session),
      user: userOf(session),
      helo: heloOf(session),
      reply: replyLine(code, added, text)
    })
  }

  /** The connection's close phase has run: its last line, and its span ends. */
  closed(record: Observed): void {
    const session = record.session
    const seen = record.seen
    const openedAt = seen.openedAt
    if (openedAt === undefined) return
    if (this.metrics !== undefined) this.metrics.connectionsActive.value--
    // A phase the client did not wait for.
    this.end(seen.run?.span, Exit.interrupt())
    seen.run = undefined
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
