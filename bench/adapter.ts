/**
 * The adapter's own cost per message, without sockets: drives the engine's
 * smtp-server callbacks (connect, then MAIL, RCPT and a 1 KB DATA per
 * message) for fake sessions in this process, and reports CPU time per
 * message. Much less noisy than the socket benchmark on a shared machine,
 * and it leaves out what raw smtp-server costs anyway (parsing, sockets).
 *
 *   node bench/adapter.ts [bench|raw] [messages] [sessions]
 *
 * `bench` is bench/app.ts's app, the one bench/server.ts serves; `raw` answers the same callbacks the
 * way smtp-server's defaults do, as the floor.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as References from "effect/References"
import { PassThrough } from "node:stream"
import type { SMTPServerDataStream, SMTPServerSession } from "smtp-server"
import * as SmtpEngine from "../src/internal/SmtpEngine.ts"
import { make as resolve } from "../src/layers/SmtpServerConfig.ts"
import { app } from "./app.ts"

/** The callbacks the benchmark drives. */
interface Callbacks {
  readonly onConnect: (session: SMTPServerSession, done: (error?: Error | null) => void) => void
  readonly onMailFrom: (address: { address: string; args: false }, session: SMTPServerSession, done: (error?: Error | null) => void) => void
  readonly onRcptTo: (address: { address: string; args: false }, session: SMTPServerSession, done: (error?: Error | null) => void) => void
  readonly onData: (stream: SMTPServerDataStream, session: SMTPServerSession, done: (error?: Error | null) => void) => void
  readonly onClose: (session: SMTPServerSession) => void
}

/** What smtp-server does without handlers. */
const raw: Callbacks = {
  onConnect: (_session, done) => void setImmediate(done),
  onMailFrom: (_address, _session, done) => void setImmediate(done),
  onRcptTo: (_address, _session, done) => void setImmediate(done),
  onData: (stream, _session, done) => {
    stream.on("end", () => done())
    stream.resume()
  },
  onClose: () => undefined
}

const [variant = "bench", messagesArg = "40000", sessionsArg = "20"] = process.argv.slice(2)
const messages = Number(messagesArg)
const sessions = Number(sessionsArg)
const body = Buffer.from(`${"x".repeat(76)}\r\n`.repeat(13))

const session = (n: number): SMTPServerSession => ({
  id: `bench${n}`,
  localAddress: "127.0.0.1",
  localPort: 25,
  remoteAddress: "127.0.0.1",
  remotePort: 40000 + n,
  clientHostname: "[127.0.0.1]",
  openingCommand: "EHLO",
  hostNameAppearsAs: "client.test",
  envelope: { mailFrom: false, rcptTo: [] },
  secure: false,
  transmissionType: "ESMTP",
  tlsOptions: false,
  xClient: new Map(),
  xForward: new Map(),
  transaction: 1
})

const answered = (call: (done: (error?: Error | null) => void) => void) =>
  new Promise<void>((ok, fail) => call((error) => error ? fail(error) : ok()))

const runSession = async (callbacks: Callbacks, n: number, count: number) => {
  const s = session(n)
  await answered((done) => callbacks.onConnect(s, done))
  for (let m = 0; m < count; m++) {
    await answered((done) => callbacks.onMailFrom({ address: "sender@example.test", args: false }, s, done))
    await answered((done) => callbacks.onRcptTo({ address: "rcpt@example.test", args: false }, s, done))
    const stream = Object.assign(new PassThrough(), { byteLength: 0, sizeExceeded: false })
    const delivered = answered((done) => callbacks.onData(stream, s, done))
    setImmediate(() => stream.end(body))
    await delivered
    // smtp-server starts the next transaction with a new envelope.
    s.transaction = (s.transaction ?? 1) + 1
    s.envelope = { mailFrom: false, rcptTo: [] }
  }
  callbacks.onClose(s)
}

const drive = (callbacks: Callbacks, first: number, perSession: number) =>
  Promise.all(Array.from({ length: sessions }, (_, i) => runSession(callbacks, first + i, perSession)))

const program = Effect.gen(function*() {
  const settings = yield* resolve({ port: 0 })
  const callbacks: Callbacks = variant === "raw" ? raw : (yield* SmtpEngine.make(app, settings)).server
  const perSession = Math.max(1, Math.floor(messages / sessions))
  // Warm-up: the JIT, and the lazily built parts of the engine.
  yield* Effect.promise(() => drive(callbacks, 0, Math.max(1, Math.floor(perSession / 4))))
  const cpu = process.cpuUsage()
  yield* Effect.promise(() => drive(callbacks, sessions, perSession))
  const used = process.cpuUsage(cpu)
  const total = perSession * sessions
  yield* Effect.sync(() => console.log(`${variant}: ${((used.user + used.system) / total).toFixed(1)} us CPU per message (${total} messages)`))
}).pipe(Effect.scoped, Effect.provide(Layer.succeed(References.MinimumLogLevel, "Warn")))

await Effect.runPromise(program)
