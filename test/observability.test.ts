/**
 * What an operator sees: the engine's log lines (captured, and rendered as
 * logfmt and JSON), the spans of a session (with an in-memory tracer, and
 * exported over OTLP to a collector on 127.0.0.1), the metrics after a known
 * sequence of sessions, and the transcript of a session.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Logger, Metric, Redacted, References, Tracer } from "effect"
import * as FetchHttpClient from "effect/http/FetchHttpClient"
import * as OtlpSerialization from "effect/observability/OtlpSerialization"
import * as OtlpTracer from "effect/observability/OtlpTracer"
import { deliver, MessageStore, RcptTo, Reject, SmtpApp, SmtpMetrics, SmtpServer, SmtpServerConfig, authUsers, hashPassword, Users } from "../src/index.ts"
import { SmtpTest } from "../src/testing/index.ts"
import { collector, connect, fixtureTls, send, serve as serveApp, spansIn } from "./support.ts"

const PASSWORD = "s3cret-Pa55word"

/** alice logs in; nobody@x.test is unknown; boom@x.test meets a bug; a sender check has a span of its own; messages are kept. */
const app = SmtpApp.empty.pipe(
  SmtpApp.onConnect((next) => next),
  SmtpApp.onMailFrom((next) => Effect.withSpan(next, "app.check_sender")),
  SmtpApp.onRcptTo((next) =>
    Effect.gen(function*() {
      const { address } = yield* RcptTo
      if (address === "nobody@x.test") return yield* Reject.permanent(550, "5.1.1", "No such user")
      if (address === "boom@x.test") return yield* Effect.die(new Error("a bug in a handler"))
      return yield* next
    })
  ),
  authUsers,
  deliver
)

const settings = { tls: fixtureTls, hostname: "mx.test", authFailureDelay: "1 millis" } as const
const users = Layer.orDie(Users.layerMemory([["alice", await Effect.runPromise(hashPassword(Redacted.make(PASSWORD)))]]))
const server = SmtpTest.layer(app, settings).pipe(Layer.provideMerge(MessageStore.layerMemory), Layer.provide(users))

/** A log line as the engine made it. */
interface Line {
  readonly level: string
  readonly message: unknown
  readonly annotations: Readonly<Record<string, unknown>>
}

/** Every line, as data and rendered as logfmt and JSON, from Debug up. */
const captureLogs = () => {
  const lines: Array<Line> = []
  const logfmt: Array<string> = []
  const json: Array<string> = []
  const structured = Logger.make(({ fiber, logLevel, message }) =>
    void lines.push({ level: logLevel, message, annotations: { ...fiber.getRef(References.CurrentLogAnnotations) } })
  )
  const loggers = [structured, Logger.map(Logger.formatLogFmt, (line) => void logfmt.push(line)), Logger.map(Logger.formatJson, (line) => void json.push(line))]
  const engine = (message?: string) =>
    lines.filter((line) => line.annotations["component"] === "effect-smtp" && (message === undefined || line.message === message || (Array.isArray(line.message) && line.message[0] === message)))
  return { lines, logfmt, json, engine, layer: Layer.mergeAll(Logger.layer(loggers), Layer.succeed(References.MinimumLogLevel, "Debug")) }
}

/** Lets the forked log fibers of a closed connection run. */
const logsSettle = Effect.repeat(Effect.yieldNow, { times: 50 })

const wire = (reply: { readonly code: number; readonly enhanced: string | undefined; readonly lines: ReadonlyArray<string> }) =>
  [reply.code, reply.enhanced, reply.lines[0]].filter((part) => part !== undefined).join(" ")

describe("log lines", () => {
  it.live("one per connection, message and rejection: facts as annotations, one message, the reply as the client read it, no secret", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const client = yield* SmtpTest.connect()
      yield* client.ehlo("client.test")
      const unknown = yield* client.command("FOO bar")
      yield* client.starttls
      yield* client.ehlo("client.test")
      const badLogin = yield* client.auth({ method: "PLAIN", username: "alice", password: "wrong" })
      expect(yield* client.auth({ method: "PLAIN", username: "alice", password: PASSWORD })).toMatchObject({ code: 235 })
      yield* client.mailFrom("a@x.test")
      const unknownUser = yield* client.rcptTo("nobody@x.test")
      yield* client.rcptTo("b@x.test")
      const accepted = yield* client.data("Subject: hi\r\n\r\nhello\r\n")
      yield* client.quit
      yield* client.closed
      yield* logsSettle
      const [message] = yield* SmtpTest.messages

      expect(logs.engine("connection opened").map((line) => line.annotations)).toEqual([
        { component: "effect-smtp", sessionId: "test1", remoteAddress: "192.0.2.1", remotePort: 49152, localPort: 2525 }
      ])
      // smtp-server's own reply, with the enhanced code it added; the app's, with the user it was for.
      expect(unknown).toMatchObject({ code: 500, enhanced: "5.5.2" })
      expect(badLogin).toMatchObject({ code: 535, enhanced: "5.7.8" })
      expect(unknownUser).toMatchObject({ code: 550, enhanced: "5.1.1" })
      expect(logs.engine("command rejected").map((line) => line.annotations)).toEqual([
        // What a client sends as a command is not repeated unless it is one of SMTP's.
        expect.objectContaining({ phase: "command", reply: wire(unknown), code: 500, enhanced: "5.5.2", by: "engine" }),
        expect.objectContaining({ phase: "auth", command: "AUTH", user: "alice", reply: wire(badLogin), enhanced: "5.7.8", by: "app" }),
        expect.objectContaining({
          phase: "rcpt_to",
          command: "RCPT",
          sender: "a@x.test",
          recipient: "nobody@x.test",
          user: "alice",
          reply: wire(unknownUser),
          code: 550,
          enhanced: "5.1.1",
          by: "app"
        })
      ])
      expect(logs.engine("authenticated").map((line) => line.annotations["user"])).toEqual(["alice"])
      expect(logs.engine("message accepted").map((line) => line.annotations)).toEqual([{
        component: "effect-smtp",
        sessionId: "test1",
        remoteAddress: "192.0.2.1",
        id: "m1",
        transaction: 1,
        sender: "a@x.test",
        recipients: 1,
        size: message!.bytes.length,
        tls: "TLSv1.3",
        user: "alice",
        helo: "client.test",
        reply: wire(accepted)
      }])
      expect(wire(accepted)).toBe("250 2.0.0 Ok: queued as m1")
      expect(logs.engine("connection closed").map((line) => line.annotations)).toEqual([{
        component: "effect-smtp",
        sessionId: "test1",
        remoteAddress: "192.0.2.1",
        durationMs: expect.any(Number),
        transactions: 1,
        messages: 1,
        bytes: message!.bytes.length,
        tls: "TLSv1.3",
        user: "alice",
        helo: "client.test"
      }])
      // Every line has one message, in every format, and no line has the password, plain or in the AUTH payload.
      const payload = Buffer.from(`\0alice\0${PASSWORD}`).toString("base64")
      for (const line of [...logs.logfmt, ...logs.json]) {
        expect(line).not.toContain(PASSWORD)
        expect(line).not.toContain(payload)
      }
      expect(logs.logfmt.length).toBeGreaterThan(10)
      for (const line of logs.logfmt) expect(line.match(/(?:^| )message=/g)).toHaveLength(1)
      for (const line of logs.json) {
        expect(Object.keys(JSON.parse(line))).toEqual(["message", "level", "timestamp", "annotations", "spans", "fiberId"])
      }
    }).pipe(Effect.provide(server), Effect.provide(logs.layer))
  })

  it.effect("each refused command of a pipeline is one line with the reply it got; a defect is an Error line with its cause", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const client = yield* SmtpTest.connect()
      yield* client.ehlo("client.test")
      const replies = yield* client.pipeline(["MAIL FROM:<a@x.test>", "RCPT TO:<b@x.test>", "DATA"])
      expect(replies.map((reply) => reply.code)).toEqual([530, 530, 530])
      yield* client.starttls
      yield* client.ehlo("client.test")
      yield* client.auth({ method: "LOGIN", username: "alice", password: PASSWORD })
      yield* client.mailFrom("a@x.test")
      const failed = yield* client.rcptTo("boom@x.test")
      expect(failed).toMatchObject({ code: 451, enhanced: "4.3.0" })
      yield* client.quit
      yield* client.closed
      yield* logsSettle
      expect(logs.engine("command rejected").map((line) => line.annotations["reply"])).toEqual([...replies, failed].map(wire))
      const [defect, ...others] = logs.engine("handler failed")
      expect(others).toEqual([])
      expect(defect).toMatchObject({ level: "Error", annotations: { phase: "rcpt_to", sessionId: "test1" } })
      expect(logs.json.find((line) => line.includes("handler failed"))).toContain("a bug in a handler")
    }).pipe(
      Effect.provide(SmtpTest.layer(app, { ...settings, authRequired: true }).pipe(Layer.provide([MessageStore.layerMemory, users]))),
      Effect.provide(logs.layer)
    )
  })
})

/** A tracer that keeps every span it makes. */
const recordSpans = () => {
  const spans: Array<Tracer.Span> = []
  const tracer = Tracer.make({
    span: (options) => {
      const span = new Tracer.NativeSpan(options)
      spans.push(span)
      return span
    }
  })
  return { spans, layer: Layer.succeed(Tracer.Tracer, tracer) }
}

const exitOf = (span: Tracer.Span) => span.status._tag === "Ended" ? span.status.exit : undefined
const parentOf = (span: Tracer.Span) => span.parent._tag === "Some" ? span.parent.value.spanId : undefined

describe("spans", () => {
  it.effect("a span per connection, a child per phase run with its reply, the app's spans under the phase's", () => {
    const traced = recordSpans()
    return Effect.gen(function*() {
      const client = yield* SmtpTest.connect()
      yield* client.ehlo("client.test")
      yield* client.mailFrom("a@x.test")
      yield* client.rcptTo("nobody@x.test")
      yield* client.rcptTo("b@x.test")
      yield* client.data("Subject: hi\r\n\r\nhello\r\n")
      yield* client.quit
      yield* client.closed
      const [message] = yield* SmtpTest.messages
      const named = (name: string) => traced.spans.filter((span) => span.name === name)
      const [connection] = named("smtp.connection")
      expect(connection).toMatchObject({ kind: "server", status: { _tag: "Ended" } })
      expect(parentOf(connection!)).toBeUndefined()
      expect(Object.fromEntries(connection!.attributes)).toMatchObject({
        "smtp.session.id": "test1",
        "client.address": "192.0.2.1",
        "client.port": 49152,
        "smtp.transactions": 1,
        "smtp.messages": 1,
        "smtp.helo": "client.test"
      })
      const phases = traced.spans.filter((span) => span.name.startsWith("smtp.") && span !== connection)
      expect(phases.map((span) => span.name)).toEqual(["smtp.connect", "smtp.mail_from", "smtp.rcpt_to", "smtp.rcpt_to", "smtp.data"])
      for (const span of phases) {
        expect(parentOf(span)).toBe(connection!.spanId)
        expect(span.traceId).toBe(connection!.traceId)
        expect(span.status._tag).toBe("Ended")
      }
      const [, mailFrom, unknown, known, data] = phases
      expect(Object.fromEntries(mailFrom!.attributes)).toMatchObject({
        "smtp.mail_from": "a@x.test",
        "smtp.helo": "client.test",
        "smtp.reply.code": 250,
        "smtp.reply.enhanced_code": "2.1.0"
      })
      expect(named("app.check_sender").map(parentOf)).toEqual([mailFrom!.spanId])
      expect(Object.fromEntries(unknown!.attributes)).toMatchObject({
        "smtp.rcpt_to": "nobody@x.test",
        "smtp.reply.code": 550,
        "smtp.reply.enhanced_code": "5.1.1"
      })
      expect(Exit.isFailure(exitOf(unknown!)!)).toBe(true)
      expect(Exit.isSuccess(exitOf(known!)!)).toBe(true)
      expect(Object.fromEntries(data!.attributes)).toMatchObject({
        "smtp.mail_from": "a@x.test",
        "smtp.rcpt_count": 1,
        "smtp.message.size": message!.bytes.length,
        "smtp.reply.code": 250,
        "smtp.reply.enhanced_code": "2.0.0"
      })
    }).pipe(Effect.provide(server), Effect.provide(traced.layer))
  })
})

describe("OTLP", () => {
  it.live("a session over a real socket: its spans reach a collector on 127.0.0.1 when the server's scope closes", () =>
    Effect.gen(function*() {
      const otlp = yield* collector
      yield* Effect.gen(function*() {
        const exporting = OtlpTracer.layer({ url: `${otlp.url}/v1/traces`, resource: { serviceName: "effect-smtp-test" } }).pipe(
          Layer.provide([OtlpSerialization.layerJson, FetchHttpClient.layer])
        )
        const context = yield* Layer.build(
          SmtpServer.layer(app).pipe(
            Layer.provide(SmtpServerConfig.layer({ host: "127.0.0.1", port: 0, hostname: "mx.test" })),
            Layer.provide([MessageStore.layerMemory, users]),
            Layer.provide(exporting)
          )
        )
        const port = Context.get(context, SmtpServer).address.port
        expect(yield* send(port, { from: "a@x.test", to: ["nobody@x.test", "b@x.test"], text: "hello" })).toMatchObject({ ok: true })
      }).pipe(Effect.scoped)
      const spans = spansIn(otlp.bodies.get("/v1/traces") ?? [])
      const connection = spans.find((span) => span.name === "smtp.connection")
      expect(connection).toBeDefined()
      const children = spans.filter((span) => span.parentSpanId === connection!.spanId).map((span) => span.name)
      expect(children).toEqual(expect.arrayContaining(["smtp.connect", "smtp.mail_from", "smtp.rcpt_to", "smtp.data"]))
      const refused = spans.find((span) =>
        span.name === "smtp.rcpt_to" && span.attributes.some((a) => a.key === "smtp.rcpt_to" && a.value["stringValue"] === "nobody@x.test")
      )
      // OTLP's status code 2 is Error.
      expect(refused?.status.code).toBe(2)
    }))
})

describe("metrics", () => {
  it.live("after a known sequence of sessions: connections, TLS, logins, messages, bytes, rejections, defects, durations", () =>
    Effect.gen(function*() {
      const first = yield* SmtpTest.connect()
      yield* first.ehlo("client.test")
      yield* first.starttls
      yield* first.ehlo("client.test")
      yield* first.auth({ method: "PLAIN", username: "alice", password: "wrong" })
      yield* first.auth({ method: "PLAIN", username: "alice", password: PASSWORD })
      yield* first.mailFrom("a@x.test")
      yield* first.rcptTo("nobody@x.test")
      yield* first.rcptTo("b@x.test")
      yield* first.data("Subject: one\r\n\r\nfirst\r\n")
      yield* first.mailFrom("a@x.test")
      yield* first.rcptTo("boom@x.test")
      yield* first.rcptTo("b@x.test")
      yield* first.data("Subject: two\r\n\r\nthe second message\r\n")
      yield* first.quit
      yield* first.closed
      const second = yield* SmtpTest.connect()
      yield* second.command("FOO")
      yield* second.quit
      yield* second.closed
      const third = yield* SmtpTest.connect({ secure: true })
      yield* third.quit
      yield* third.closed
      const sizes = (yield* SmtpTest.messages).map((message) => message.bytes.length)
      const count = (metric: Metric.Metric<number, { readonly count: number }>) => Effect.map(Metric.value(metric), (state) => state.count)

      expect(yield* count(SmtpMetrics.connectionsOpened)).toBe(3)
      expect(yield* Metric.value(SmtpMetrics.connectionsActive)).toEqual({ value: 0 })
      expect(yield* count(SmtpMetrics.tlsSessions("starttls"))).toBe(1)
      expect(yield* count(SmtpMetrics.tlsSessions("implicit"))).toBe(1)
      expect(yield* count(SmtpMetrics.authAttempts("success"))).toBe(1)
      expect(yield* count(SmtpMetrics.authAttempts("failure"))).toBe(1)
      expect(yield* count(SmtpMetrics.messagesAccepted)).toBe(2)
      expect(yield* count(SmtpMetrics.receivedBytes)).toBe(sizes[0]! + sizes[1]!)
      expect(yield* Metric.value(SmtpMetrics.messageSize)).toMatchObject({ count: 2, sum: sizes[0]! + sizes[1]! })
      expect(yield* count(SmtpMetrics.rejections("rcpt_to", "5xx", "5.1.1"))).toBe(1)
      expect(yield* count(SmtpMetrics.rejections("rcpt_to", "4xx", "4.3.0"))).toBe(1)
      expect(yield* count(SmtpMetrics.rejections("auth", "5xx", "5.7.8"))).toBe(1)
      expect(yield* count(SmtpMetrics.rejections("command", "5xx", "5.5.2"))).toBe(1)
      expect(yield* count(SmtpMetrics.defects("rcpt_to"))).toBe(1)
      expect(yield* count(SmtpMetrics.defects("data"))).toBe(0)
      expect(yield* Metric.value(SmtpMetrics.phaseDuration("data"))).toMatchObject({ count: 2 })
      expect(yield* Metric.value(SmtpMetrics.phaseDuration("rcpt_to"))).toMatchObject({ count: 4 })
      // Each metric has a series per label set, no more: nothing unbounded (addresses, users) became a label.
      const series = Metric.snapshotUnsafe(yield* Effect.context<never>()).filter((snapshot) => snapshot.id.startsWith("smtp_"))
      for (const snapshot of series) {
        expect(Object.keys(snapshot.attributes ?? {}).every((key) => ["phase", "class", "enhanced", "result", "mode"].includes(key))).toBe(true)
      }
    }).pipe(Effect.provide(server), Effect.provide(Layer.succeed(Metric.MetricRegistry, new Map()))))
})

describe("transcript", () => {
  it.effect("the test kit's client reads the commands and replies; AUTH payloads redacted, no message body", () =>
    Effect.gen(function*() {
      const client = yield* SmtpTest.connect()
      yield* client.ehlo("client.test")
      yield* client.auth({ method: "LOGIN", username: "alice", password: PASSWORD })
      yield* client.send({ from: "a@x.test", to: "b@x.test", message: "Subject: secret plans\r\n\r\nbody\r\n" })
      yield* client.quit
      const transcript = yield* client.transcript
      expect(transcript.filter((line) => line.from === "client").map((line) => line.line)).toEqual([
        "EHLO client.test",
        "AUTH LOGIN",
        "/* secured */",
        "/* secured */",
        "MAIL FROM:<a@x.test>",
        "RCPT TO:<b@x.test>",
        "DATA",
        "QUIT"
      ])
      expect(transcript.filter((line) => line.from === "server").map((line) => line.line.slice(0, 4))).toEqual([
        "220 ",
        "250-",
        "334 ",
        "334 ",
        "235 ",
        "250 ",
        "250 ",
        "354 ",
        "250 ",
        "221 "
      ])
      expect(transcript.slice(-3)).toEqual([
        { from: "server", line: "250 2.0.0 Ok: queued as m1" },
        { from: "client", line: "QUIT" },
        { from: "server", line: expect.stringMatching(/^221 2.0.0 /) }
      ])
      const all = transcript.map((line) => line.line).join("\n")
      expect(all).not.toContain("secret plans")
      expect(all).not.toContain(Buffer.from(PASSWORD).toString("base64"))
    }).pipe(Effect.provide(SmtpTest.layer(app, { allowInsecureAuth: true }).pipe(Layer.provideMerge(MessageStore.layerMemory), Layer.provide(users)))))
})

describe("what the telemetry does not get wrong", () => {
  it.effect("a client gone while its handler runs: no rejection line or count for the reply it never got, its span interrupted", () => {
    const logs = captureLogs()
    const traced = recordSpans()
    const hanging = SmtpApp.empty.pipe(SmtpApp.onRcptTo(() => Effect.never))
    return Effect.gen(function*() {
      yield* Effect.scoped(Effect.gen(function*() {
        const client = yield* SmtpTest.connect()
        yield* client.ehlo("client.test")
        yield* client.mailFrom("a@x.test")
        yield* Effect.forkChild(client.rcptTo("b@x.test"))
        yield* Effect.repeat(Effect.yieldNow, { times: 10 })
      }))
      yield* logsSettle
      expect(logs.engine("command rejected")).toEqual([])
      const series = Metric.snapshotUnsafe(yield* Effect.context<never>()).filter((snapshot) => snapshot.id === "smtp_rejections_total")
      expect(series).toEqual([])
      const [rcpt] = traced.spans.filter((span) => span.name === "smtp.rcpt_to")
      expect(Exit.hasInterrupts(exitOf(rcpt!)!)).toBe(true)
      expect(logs.engine("connection closed")).toHaveLength(1)
    }).pipe(
      Effect.provide(SmtpTest.layer(hanging)),
      Effect.provide(Layer.mergeAll(logs.layer, traced.layer, Layer.succeed(Metric.MetricRegistry, new Map())))
    )
  })

  it.effect("MAIL and RCPT pipelined, with middleware that suspends: each span ends with its own reply", () => {
    const traced = recordSpans()
    const suspending = SmtpApp.empty.pipe(
      SmtpApp.onMailFrom((next) => Effect.andThen(Effect.yieldNow, Effect.withSpan(next, "app.sender"))),
      SmtpApp.onRcptTo((next) => Effect.andThen(Effect.yieldNow, Effect.withSpan(next, "app.recipient")))
    )
    return Effect.gen(function*() {
      const client = yield* SmtpTest.connect()
      yield* client.ehlo("client.test")
      const replies = yield* client.pipeline(["MAIL FROM:<a@x.test>", "RCPT TO:<b@x.test>", "RCPT TO:<c@x.test>"])
      expect(replies.map(wire)).toEqual(["250 2.1.0 Accepted", "250 2.1.5 Accepted", "250 2.1.5 Accepted"])
      yield* client.quit
      yield* client.closed
      const named = (name: string) => traced.spans.filter((span) => span.name === name)
      const attributes = (span: Tracer.Span) => Object.fromEntries(span.attributes)
      expect(named("smtp.mail_from").map(attributes)).toEqual([
        expect.objectContaining({ "smtp.mail_from": "a@x.test", "smtp.reply.code": 250, "smtp.reply.enhanced_code": "2.1.0" })
      ])
      expect(named("smtp.rcpt_to").map(attributes)).toEqual([
        expect.objectContaining({ "smtp.rcpt_to": "b@x.test", "smtp.reply.enhanced_code": "2.1.5" }),
        expect.objectContaining({ "smtp.rcpt_to": "c@x.test", "smtp.reply.enhanced_code": "2.1.5" })
      ])
      expect(named("app.sender").map(parentOf)).toEqual(named("smtp.mail_from").map((span) => span.spanId))
      expect(named("app.recipient").map(parentOf)).toEqual(named("smtp.rcpt_to").map((span) => span.spanId))
      for (const span of traced.spans) expect(Exit.isSuccess(exitOf(span)!), span.name).toBe(true)
    }).pipe(Effect.provide(SmtpTest.layer(suspending)), Effect.provide(traced.layer))
  })

  it.effect("credentials sent where no AUTH takes them stay out of the transcript and the AUTH counts", () =>
    Effect.gen(function*() {
      const client = yield* SmtpTest.connect()
      yield* client.ehlo("client.test")
      const secret = Buffer.from(PASSWORD).toString("base64")
      // Before STARTTLS, AUTH is not offered: its response lines arrive as commands of their own.
      expect(yield* client.command("AUTH LOGIN")).toMatchObject({ code: 500 })
      expect(yield* client.command(secret)).toMatchObject({ code: 500 })
      expect(yield* client.command(`AUTH\tPLAIN\t${secret}`)).toMatchObject({ code: 500 })
      yield* client.quit
      const lines = (yield* client.transcript).filter((line) => line.from === "client").map((line) => line.line)
      expect(lines).toEqual(["EHLO client.test", "AUTH LOGIN", "/* secured */", "AUTH PLAIN /* secured */", "QUIT"])
      expect(yield* Effect.map(Metric.value(SmtpMetrics.authAttempts("failure")), (state) => state.count)).toBe(0)
      expect(yield* Effect.map(Metric.value(SmtpMetrics.rejections("auth", "5xx", "5.5.2")), (state) => state.count)).toBe(1)
      expect(yield* Effect.map(Metric.value(SmtpMetrics.rejections("command", "5xx", "5.5.2")), (state) => state.count)).toBe(2)
    }).pipe(
      Effect.provide(SmtpTest.layer(app, { tls: fixtureTls }).pipe(Layer.provide([MessageStore.layerMemory, users]))),
      Effect.provide(Layer.succeed(Metric.MetricRegistry, new Map()))
    ))

  it.live("the limit of failed logins: its 421 counts as a failure and is the engine's", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const client = yield* SmtpTest.connect()
      yield* client.ehlo("client.test")
      expect(yield* client.auth({ method: "PLAIN", username: "alice", password: "no" })).toMatchObject({ code: 535 })
      expect(yield* client.auth({ method: "PLAIN", username: "alice", password: "no" })).toMatchObject({ code: 421, enhanced: "4.7.0" })
      yield* client.closed
      yield* logsSettle
      expect(yield* Effect.map(Metric.value(SmtpMetrics.authAttempts("failure")), (state) => state.count)).toBe(2)
      expect(logs.engine("command rejected").map((line) => [line.annotations["code"], line.annotations["by"], line.annotations["user"]])).toEqual([
        [535, "app", "alice"],
        [421, "engine", "alice"]
      ])
    }).pipe(
      Effect.provide(
        SmtpTest.layer(app, { allowInsecureAuth: true, maxAuthFailures: 2, authFailureDelay: "1 millis" }).pipe(Layer.provide([MessageStore.layerMemory, users]))
      ),
      Effect.provide(Layer.mergeAll(logs.layer, Layer.succeed(Metric.MetricRegistry, new Map())))
    )
  })

  it.effect("a defect in a close handler is counted and logged once, as an Error with its cause", () => {
    const logs = captureLogs()
    const failing = SmtpApp.empty.pipe(SmtpApp.onClose(() => Effect.die(new Error("close bug"))))
    return Effect.gen(function*() {
      const client = yield* SmtpTest.connect()
      yield* client.quit
      yield* client.closed
      yield* logsSettle
      expect(yield* Effect.map(Metric.value(SmtpMetrics.defects("close")), (state) => state.count)).toBe(1)
      expect(logs.engine("handler failed").map((line) => [line.level, line.annotations["phase"]])).toEqual([["Error", "close"]])
      expect(logs.engine("close handler failed")).toEqual([])
    }).pipe(
      Effect.provide(SmtpTest.layer(failing)),
      Effect.provide(Layer.mergeAll(logs.layer, Layer.succeed(Metric.MetricRegistry, new Map())))
    )
  })

  it.live("over TCP, a reply to no command (a command line's timeout) is not blamed on the last command; AUTH before the greeting does no harm", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const server = yield* serveApp(SmtpApp.empty.pipe(deliver), { commandTimeout: "300 millis" })
      const early = yield* connect(server.address.port)
      // Before the greeting, which smtp-server holds back for a moment to catch clients that talk first.
      yield* early.write("AUTH PLAIN AGFsaWNlAHg=\r\n")
      expect(yield* early.reply).toMatch(/^421 .*You talk too soon/)
      const client = yield* connect(server.address.port)
      yield* client.reply
      for (const line of ["EHLO client.test", "MAIL FROM:<a@x.test>", "RCPT TO:<b@x.test>"]) {
        yield* client.write(`${line}\r\n`)
        yield* client.reply
      }
      yield* client.write("NOOP")
      expect(yield* client.reply).toMatch(/^421 4\.4\.2 /)
      yield* client.closed
      yield* Effect.sleep("50 millis")
      const timedOut = logs.engine("command rejected").filter((line) => line.annotations["code"] === 421).at(-1)
      expect(timedOut?.annotations).toMatchObject({ phase: "command", sender: "a@x.test" })
      expect(timedOut?.annotations["command"]).toBeUndefined()
      expect(timedOut?.annotations["recipient"]).toBeUndefined()
      expect(yield* send(server.address.port, { from: "a@x.test", to: "b@x.test", text: "still serving" })).toMatchObject({ ok: true })
    }).pipe(Effect.provide(Layer.mergeAll(logs.layer, MessageStore.layerMemory)))
  })
})

describe("connections a limit refuses", () => {
  it.live("on an implicit TLS port, one dropped before its handshake is logged and counted, with no reply", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const server = yield* serveApp(SmtpApp.empty.pipe(deliver), { tls: fixtureTls, implicitTls: true, maxConnectionsPerClient: 1 })
      const held = yield* connect(server.address.port)
      const dropped = yield* connect(server.address.port)
      yield* dropped.closed
      yield* Effect.sleep("50 millis")
      expect(held.socket.readyState).toBe("open")
      expect(logs.engine("connection refused").map((line) => line.annotations)).toEqual([
        { component: "effect-smtp", remoteAddress: "127.0.0.1", phase: "connect", code: 421, enhanced: "4.7.0", by: "engine" }
      ])
      expect(yield* Effect.map(Metric.value(SmtpMetrics.rejections("connect", "4xx", "4.7.0")), (state) => state.count)).toBe(1)
    }).pipe(Effect.provide(Layer.mergeAll(logs.layer, MessageStore.layerMemory, Layer.succeed(Metric.MetricRegistry, new Map()))))
  })
})
