/**
 * The test kit's SMTP client.
 *
 * One method per command, each answering with the parsed reply, rejections
 * included: a test asserts `{ code: 550, enhanced: "5.1.1" }` on the value
 * rather than catching anything. Only a connection that ends before the
 * reply, or a TLS handshake that fails, is an error (`SmtpTestError`). Replies
 * are matched to commands in the order the commands were written, so commands
 * may run from concurrent fibers (a command forked before `TestClock.adjust`).
 */
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { Duplex } from "node:stream"
import * as tls from "node:tls"
import type * as SmtpSession from "../services/SmtpSession.ts"
import type * as SmtpTransaction from "../services/SmtpTransaction.ts"

/** A reply as the client read it. */
export interface Reply {
  readonly code: number
  /** The RFC 3463 enhanced status code at the start of the text, if any. */
  readonly enhanced: string | undefined
  /** The text of each line, without the code and the enhanced code. */
  readonly lines: ReadonlyArray<string>
}

/** The connection ended before a reply, or TLS could not be set up. */
export class SmtpTestError extends Schema.TaggedError<SmtpTestError>()("SmtpTestError", {
  message: Schema.String
}) {}

/** ESMTP parameters of MAIL FROM and RCPT TO: `{ SIZE: "1000", SMTPUTF8: true }`. */
export type Params = Readonly<Record<string, string | true>>

/** A message for `send`. */
export interface Mail {
  readonly from: string
  readonly to: string | ReadonlyArray<string>
  /** The message as it would be in a file; lines may end with LF or CRLF. */
  readonly message: string | Uint8Array
}

/** What the app saw of a connection, recorded by the test server. */
export interface Seen {
  /** The session's final state, once the connection has closed and its close phase has run. */
  readonly session: Deferred.Deferred<SmtpSession.State, SmtpTestError>
  /** The connection's services as its close phase had them: the app's user among them, once authenticated. */
  services: Context.Context<never> | undefined
  /** Every transaction as it ended, in order. */
  readonly transactions: Array<SmtpTransaction.State>
  /** The session's commands and replies, once it has closed. */
  transcript: ReadonlyArray<SmtpSession.TranscriptLine>
}

/** A client on one connection of the test server. */
export interface SmtpTestClient {
  /** The greeting (`220`), or the rejection of the connect phase. */
  readonly greeting: Reply
  /** Sends one command line (without CRLF). */
  readonly command: (line: string) => Effect.Effect<Reply, SmtpTestError>
  /** Sends the lines in one write, as a pipelining client does, and reads one reply for each. */
  readonly pipeline: (lines: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<Reply>, SmtpTestError>
  readonly ehlo: (name: string) => Effect.Effect<Reply, SmtpTestError>
  readonly helo: (name: string) => Effect.Effect<Reply, SmtpTestError>
  /** STARTTLS; after a `220`, the TLS handshake over the in-memory connection. */
  readonly starttls: Effect.Effect<Reply, SmtpTestError>
  /** AUTH PLAIN in one command, or AUTH LOGIN in three; the last reply. */
  readonly auth: (credentials: {
    readonly method: "PLAIN" | "LOGIN"
    readonly username: string
    readonly password: string
  }) => Effect.Effect<Reply, SmtpTestError>
  readonly mailFrom: (address: string, params?: Params) => Effect.Effect<Reply, SmtpTestError>
  readonly rcptTo: (address: string, params?: Params) => Effect.Effect<Reply, SmtpTestError>
  /** DATA, then after a `354` the message, dot-stuffed and with CRLF line ends; the reply to the message. */
  readonly data: (message: string | Uint8Array) => Effect.Effect<Reply, SmtpTestError>
  /** MAIL FROM, RCPT TO for each recipient, DATA: the first reply that is not a success, or the reply to the message. */
  readonly send: (mail: Mail) => Effect.Effect<Reply, SmtpTestError>
  readonly rset: Effect.Effect<Reply, SmtpTestError>
  readonly quit: Effect.Effect<Reply, SmtpTestError>
  /** The next reply no command asked for: a `421` after the idle timeout, for instance. */
  readonly reply: Effect.Effect<Reply, SmtpTestError>
  /** Waits until the connection has closed and the app's close phase has run. */
  readonly closed: Effect.Effect<void>
  /**
   * The final `SmtpSession` state: waits until the connection has closed. It
   * fails for a connection the server refused before a session started.
   */
  readonly session: Effect.Effect<SmtpSession.State, SmtpTestError>
  /** Each transaction the app saw on the connection, as it ended: waits until it has closed. */
  readonly transactions: Effect.Effect<ReadonlyArray<SmtpTransaction.State>, SmtpTestError>
  /**
   * The app's user the connection authenticated as (`Some` with the value its
   * auth middleware accepted), read with the app's user key: waits until the
   * connection has closed.
   */
  readonly user: <I, S>(key: Context.Key<I, S>) => Effect.Effect<Option.Option<S>, SmtpTestError>
  /**
   * The session's commands and replies as the server saw them (AUTH payloads
   * redacted, no message bodies): waits until the connection has closed. The
   * test kit keeps transcripts unless its `transcript` setting is `false`.
   */
  readonly transcript: Effect.Effect<ReadonlyArray<SmtpSession.TranscriptLine>, SmtpTestError>
}

const REPLY_LINE = /^(\d{3})([ -]?)(.*)$/
const ENHANCED = /^([245]\.\d{1,3}\.\d{1,3})(?: |$)/

const parseReply = (code: number, texts: ReadonlyArray<string>): Reply => {
  const enhanced = ENHANCED.exec(texts[0] ?? "")?.[1]
  const lines = enhanced === undefined
    ? texts
    : texts.map((text) => text.startsWith(enhanced) ? text.slice(enhanced.length).trimStart() : text)
  return { code, enhanced, lines }
}

/** The body of DATA: CRLF line ends, dot-stuffed, ending with the `.` line. */
const encodeMessage = (message: string | Uint8Array): Buffer => {
  const lines = Buffer.from(message).toString("latin1").split(/\r?\n/)
  if (lines.at(-1) === "") lines.pop()
  const body = lines.map((line) => line.startsWith(".") ? `.${line}` : line).join("\r\n")
  return Buffer.from(lines.length > 0 ? `${body}\r\n.\r\n` : ".\r\n", "latin1")
}

const base64 = (text: string): string => Buffer.from(text, "utf8").toString("base64")

const pathCommand = (verb: string, address: string, params: Params): string =>
  [
    `${verb}:<${address}>`,
    ...Object.entries(params).map(([key, value]) => value === true ? key : `${key}=${value}`)
  ].join(" ")

const isSuccess = (reply: Reply): boolean => reply.code < 400

/** Reads replies off a stream and hands them out in the order they were asked for. */
class Replies {
  private pending = Buffer.alloc(0)
  private texts: Array<string> = []
  private readonly ready: Array<Reply> = []
  private readonly waiting: Array<Deferred.Deferred<Reply, SmtpTestError>> = []
  private failure: SmtpTestError | undefined = undefined

  readonly onData = (chunk: Buffer): void => {
    this.pending = Buffer.concat([this.pending, chunk])
    let end = this.pending.indexOf("\r\n")
    while (end !== -1) {
      this.onLine(this.pending.subarray(0, end).toString("utf8"))
      this.pending = this.pending.subarray(end + 2)
      end = this.pending.indexOf("\r\n")
    }
  }

  readonly onEnd = (): void => this.fail(new SmtpTestError({ message: "the connection closed before the reply" }))

  get ended(): boolean {
    return this.failure !== undefined
  }

  fail(error: SmtpTestError): void {
    this.failure ??= error
    for (const waiter of this.waiting.splice(0)) Deferred.doneUnsafe(waiter, Effect.fail(error))
  }

  /** A place in line for the next reply: reserved at once, so replies follow the order of the writes. */
  reserve(): Deferred.Deferred<Reply, SmtpTestError> {
    const waiter = Deferred.makeUnsafe<Reply, SmtpTestError>()
    const reply = this.ready.shift()
    if (reply !== undefined) Deferred.doneUnsafe(waiter, Effect.succeed(reply))
    else if (this.failure !== undefined) Deferred.doneUnsafe(waiter, Effect.fail(this.failure))
    else this.waiting.push(waiter)
    return waiter
  }

  private onLine(line: string): void {
    const match = REPLY_LINE.exec(line)
    if (match === null) return this.fail(new SmtpTestError({ message: `not an SMTP reply line: ${JSON.stringify(line)}` }))
    this.texts.push(match[3] ?? "")
    if (match[2] === "-") return
    const reply = parseReply(Number(match[1]), this.texts)
    this.texts = []
    const waiter = this.waiting.shift()
    if (waiter !== undefined) Deferred.doneUnsafe(waiter, Effect.succeed(reply))
    else this.ready.push(reply)
  }
}

/** The client end of a connection, before the greeting was read. */
export interface Connection {
  readonly socket: Duplex
  readonly seen: Seen
  /** How the client sets up TLS (server name, trust). */
  readonly tls: tls.ConnectionOptions
}

const handshake = (socket: Duplex, options: tls.ConnectionOptions): Effect.Effect<tls.TLSSocket, SmtpTestError> =>
  Effect.callback<tls.TLSSocket, SmtpTestError>((resume) => {
    const secure = tls.connect({ ...options, socket })
    const onError = (error: Error) => resume(Effect.fail(new SmtpTestError({ message: `TLS: ${error.message}` })))
    secure.once("error", onError)
    secure.once("secureConnect", () => {
      secure.off("error", onError)
      resume(Effect.succeed(secure))
    })
  })

/** Starts TLS on the client end, before anything is read from it. */
export const secure = (connection: Connection): Effect.Effect<Connection, SmtpTestError> =>
  Effect.map(handshake(connection.socket, connection.tls), (socket) => ({ ...connection, socket }))

/** A client on `connection`: reads the greeting and returns. */
export const make = (connection: Connection): Effect.Effect<SmtpTestClient, SmtpTestError> =>
  Effect.gen(function*() {
    const replies = new Replies()
    let socket = connection.socket
    const listen = (stream: Duplex) => {
      stream.on("data", replies.onData)
      stream.on("end", replies.onEnd)
      stream.on("close", replies.onEnd)
      stream.on("error", () => undefined)
    }
    listen(socket)
    const socketClosed = Effect.callback<void>((resume) => {
      if (socket.destroyed) return resume(Effect.void)
      socket.once("close", () => resume(Effect.void))
    })
    const session = Effect.andThen(socketClosed, Deferred.await(connection.seen.session))

    const transmit = (data: string | Buffer): void => {
      if (!replies.ended) socket.write(data)
    }
    const exchange = (data: string | Buffer) =>
      Effect.suspend(() => {
        const waiter = replies.reserve()
        transmit(data)
        return Deferred.await(waiter)
      })
    const command = (line: string) => exchange(`${line}\r\n`)
    const thenIf = (first: Effect.Effect<Reply, SmtpTestError>, code: number, next: Effect.Effect<Reply, SmtpTestError>) =>
      Effect.flatMap(first, (reply) => reply.code === code ? next : Effect.succeed(reply))

    const starttls = Effect.flatMap(command("STARTTLS"), (reply) => {
      if (reply.code !== 220) return Effect.succeed(reply)
      const raw = socket
      raw.off("data", replies.onData)
      raw.off("end", replies.onEnd)
      raw.off("close", replies.onEnd)
      return handshake(raw, connection.tls).pipe(
        Effect.tapError((error) => Effect.sync(() => replies.fail(error))),
        Effect.map((upgraded) => {
          socket = upgraded
          listen(upgraded)
          return reply
        })
      )
    })

    const data = (message: string | Uint8Array) => thenIf(command("DATA"), 354, exchange(encodeMessage(message)))
    const mailFrom = (address: string, params: Params = {}) => command(pathCommand("MAIL FROM", address, params))
    const rcptTo = (address: string, params: Params = {}) => command(pathCommand("RCPT TO", address, params))

    const reply = Effect.suspend(() => Deferred.await(replies.reserve()))
    const greeting = yield* reply
    return {
      greeting,
      command,
      pipeline: (lines) =>
        Effect.suspend(() => {
          const waiters = lines.map(() => replies.reserve())
          transmit(lines.map((line) => `${line}\r\n`).join(""))
          return Effect.forEach(waiters, Deferred.await)
        }),
      ehlo: (name) => command(`EHLO ${name}`),
      helo: (name) => command(`HELO ${name}`),
      starttls,
      auth: ({ method, username, password }) =>
        method === "PLAIN"
          ? command(`AUTH PLAIN ${base64(`\u0000${username}\u0000${password}`)}`)
          : thenIf(thenIf(command("AUTH LOGIN"), 334, command(base64(username))), 334, command(base64(password))),
      mailFrom,
      rcptTo,
      data,
      send: ({ from, to, message }) =>
        Effect.gen(function*() {
          const steps = [mailFrom(from), ...(typeof to === "string" ? [to] : to).map((address) => rcptTo(address))]
          for (const step of steps) {
            const reply = yield* step
            if (!isSuccess(reply)) return reply
          }
          return yield* data(message)
        }),
      rset: command("RSET"),
      quit: command("QUIT"),
      reply,
      closed: Effect.ignore(session),
      session,
      transactions: Effect.as(session, connection.seen.transactions),
      transcript: Effect.map(session, () => connection.seen.transcript),
      user: (key) =>
        Effect.map(session, () => {
          const services = connection.seen.services
          return services === undefined ? Option.none() : Context.getOption(services, key)
        })
    } satisfies SmtpTestClient
  })
