/**
 * Helpers for tests that talk SMTP over real sockets on 127.0.0.1.
 */
import { Context, Effect, Layer, Redacted, Ref, Schema } from "effect"
import { createServer, type IncomingMessage } from "node:http"
import { readFileSync } from "node:fs"
import * as net from "node:net"
import type * as tls from "node:tls"
import nodemailer, { type SendMailOptions } from "nodemailer"
import type SMTPTransport from "nodemailer/lib/smtp-transport"
import { deliver, MemoryMessages, MessageStore, SmtpApp, SmtpServer, SmtpServerConfig, type UserKey } from "../src/index.ts"
import type { Options } from "../src/layers/SmtpServerConfig.ts"

/** What a test's app saw, in order: each test provides a fresh `Trail.layer`. */
export class Trail extends Context.Service<Trail, Ref.Ref<ReadonlyArray<string>>>()("test/Trail") {
  static readonly layer = Layer.effect(Trail, Ref.make<ReadonlyArray<string>>([]))
  static readonly add = (entry: string) => Trail.use((trail) => Ref.update(trail, (all) => [...all, entry]))
  static readonly all = Trail.use(Ref.get)
}

/** A certificate for localhost, for tests only. */
export const fixtureTls = {
  cert: readFileSync(new URL("./fixtures/localhost.crt", import.meta.url), "utf8"),
  key: Redacted.make(readFileSync(new URL("./fixtures/localhost.key", import.meta.url), "utf8"))
}

/** Serves `app` on 127.0.0.1 with a free port, for the current scope. */
export const serve = <Cs, Ts, R, U extends UserKey>(app: SmtpApp.SmtpApp<Cs, Ts, R, U>, options: Options = {}) =>
  Layer.build(
    SmtpServer.layer(app).pipe(Layer.provide(SmtpServerConfig.layer({ host: "127.0.0.1", port: 0, hostname: "mx.test", ...options })))
  ).pipe(Effect.map((context) => Context.get(context, SmtpServer)))

/** A server that stores into memory; returns its port, its open connections and the stored messages. */
export const serveMemory = (options: Options = {}) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      SmtpServer.layer(SmtpApp.empty.pipe(deliver)).pipe(
        Layer.provideMerge(MessageStore.layerMemory),
        Layer.provide(SmtpServerConfig.layer({ host: "127.0.0.1", port: 0, hostname: "mx.test", ...options }))
      )
    )
    const server = Context.get(context, SmtpServer)
    return { port: server.address.port, connections: server.connections, messages: Context.get(context, MemoryMessages).all }
  })

/** A nodemailer transport to a local port. */
export const transport = (port: number, options: Partial<SMTPTransport.Options> = {}) =>
  nodemailer.createTransport({ host: "127.0.0.1", port, secure: false, ignoreTLS: true, ...options })

/** Sends one message; the result is nodemailer's info or the SMTP error it reported. */
export const send = (port: number, mail: SendMailOptions, options: Partial<SMTPTransport.Options> = {}) =>
  Effect.promise(() => {
    const client = transport(port, options)
    return client.sendMail(mail).then(
      (info) => ({ ok: true as const, response: info.response }),
      (error: { responseCode?: number; response?: string; message: string }) => ({
        ok: false as const,
        code: error.responseCode,
        response: error.response ?? error.message
      })
    ).finally(() => client.close())
  })

/** A raw client: send bytes, read complete replies. */
export interface RawClient {
  readonly write: (data: string | Buffer) => Effect.Effect<void>
  /** Waits for the next complete reply (all its lines), or "" if the connection closed. */
  readonly reply: Effect.Effect<string>
  /** Waits until the server closes the connection. */
  readonly closed: Effect.Effect<void>
  readonly socket: net.Socket
}

/** The replies `socket` receives: each run waits for the next complete reply (all its lines), "" once it has closed. */
export const replyReader = (socket: net.Socket | tls.TLSSocket): Effect.Effect<string> => {
  let buffer = ""
  let ended = false
  const waiters: Array<() => void> = []
  const wake = () => waiters.splice(0).forEach((waiter) => waiter())
  socket.on("data", (chunk: Buffer) => {
    buffer += chunk.toString("latin1")
    wake()
  })
  socket.on("close", () => {
    ended = true
    wake()
  })
  const take = (): string | undefined => {
    const match = /^(?:\d{3}-[^\r\n]*\r\n)*\d{3}(?: [^\r\n]*)?\r\n/.exec(buffer)
    if (match === null) return ended ? "" : undefined
    buffer = buffer.slice(match[0].length)
    return match[0].trimEnd()
  }
  return Effect.callback<string>((resume) => {
    const attempt = () => {
      const found = take()
      if (found === undefined) return void waiters.push(attempt)
      resume(Effect.succeed(found))
    }
    attempt()
  })
}

/** Writes `data` to `socket` and waits until it is flushed. */
export const writer = (socket: net.Socket | tls.TLSSocket) => (data: string | Buffer): Effect.Effect<void> =>
  Effect.callback<void>((done) => void socket.write(data, () => done(Effect.void)))

export const connect = (port: number) =>
  Effect.acquireRelease(
    Effect.callback<RawClient>((resume) => {
      const socket = net.connect(port, "127.0.0.1")
      socket.on("error", () => undefined)
      const reply = replyReader(socket)
      socket.once("connect", () =>
        resume(Effect.succeed({
          socket,
          write: writer(socket),
          reply,
          closed: Effect.callback<void>((done) => {
            if (socket.destroyed) return done(Effect.void)
            socket.once("close", () => done(Effect.void))
          })
        })))
    }),
    (client) => Effect.sync(() => client.socket.destroy())
  )

/** EHLO, then MAIL, RCPT and DATA pipelined as RFC 2920 allows (DATA last); the four replies. */
export const startMessage = (client: RawClient, from = "a@x.test", to = "b@x.test") =>
  Effect.gen(function*() {
    yield* client.write("EHLO client.test\r\n")
    const ehlo = yield* client.reply
    yield* client.write(`MAIL FROM:<${from}>\r\nRCPT TO:<${to}>\r\nDATA\r\n`)
    return [ehlo, yield* client.reply, yield* client.reply, yield* client.reply]
  })

/** An OTLP collector on 127.0.0.1: the JSON bodies posted to each path. */
export const collector = Effect.acquireRelease(
  Effect.callback<{ readonly url: string; readonly bodies: Map<string, Array<unknown>>; readonly close: () => void }>((resume) => {
    const bodies = new Map<string, Array<unknown>>()
    const read = (request: IncomingMessage) => {
      const chunks: Array<Buffer> = []
      request.on("data", (chunk: Buffer) => chunks.push(chunk))
      return new Promise<string>((done) => request.on("end", () => done(Buffer.concat(chunks).toString("utf8"))))
    }
    const http = createServer((request, response) => {
      void read(request).then((body) => {
        const path = request.url ?? ""
        bodies.set(path, [...bodies.get(path) ?? [], JSON.parse(body)])
        response.writeHead(200, { "content-type": "application/json" }).end("{}")
      })
    })
    http.listen(0, "127.0.0.1", () => {
      const address = http.address()
      const port = address !== null && typeof address === "object" ? address.port : 0
      resume(Effect.succeed({ url: `http://127.0.0.1:${port}`, bodies, close: () => http.close() }))
    })
  }),
  (collector) => Effect.sync(collector.close)
)

/** OTLP's JSON encoding of a trace export, as far as the test reads it. */
const TraceExport = Schema.Struct({
  resourceSpans: Schema.Array(Schema.Struct({
    scopeSpans: Schema.Array(Schema.Struct({
      spans: Schema.Array(Schema.Struct({
        name: Schema.String,
        spanId: Schema.String,
        parentSpanId: Schema.optionalKey(Schema.String),
        status: Schema.Struct({ code: Schema.Number }),
        attributes: Schema.Array(Schema.Struct({ key: Schema.String, value: Schema.Record(Schema.String, Schema.Unknown) }))
      }))
    }))
  }))
})

/** The spans in OTLP trace export bodies. */
export const spansIn = (bodies: ReadonlyArray<unknown>) =>
  bodies.flatMap((body) =>
    Schema.decodeUnknownSync(TraceExport)(body).resourceSpans.flatMap((resource) => resource.scopeSpans.flatMap((scope) => scope.spans))
  )
