/**
 * A `MessageStore` that delivers to a Maildir (the format mutt and Dovecot read).
 *
 * Each message is streamed to `tmp/`, flushed with fsync, then renamed into
 * `new/` (and the directory flushed), so a message is in `new/` whole or not at
 * all, and it is on disk before the 250 reply. The file is the message exactly
 * as received (after dot-unstuffing), preceded by the trace fields a receiving
 * server adds: `Return-Path:`, `X-Original-To:` per recipient and `Received:`.
 * If anything fails, the partial file is removed and the client gets a
 * temporary `451 4.3.0`.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import * as Reject from "../phases/Reject.ts"
import { type Delivery, MessageStore } from "../services/MessageStore.ts"
import { reversePath } from "../services/SmtpAddress.ts"

/** Where and as whom to deliver. */
export interface Options {
  /** The Maildir root; `tmp`, `new` and `cur` are created if missing. */
  readonly root: string
  /** This server's name, for the `Received:` field. */
  readonly hostname: string
}

/** The Maildir cannot be created or opened. */
export class MaildirError extends Schema.TaggedError<MaildirError>()("MaildirError", { message: Schema.String }) {}

const storageFailed = Reject.temporary(451, "4.3.0", "Could not store the message, try again later")

let counter = 0

/** A Maildir unique name: time, microseconds, process id, counter, host. */
const uniqueName = (hostname: string): string => {
  const now = Date.now()
  const micros = (now % 1000) * 1000 + Number((process.hrtime.bigint() / 1000n) % 1000n)
  counter = (counter + 1) % 1_000_000
  return `${Math.floor(now / 1000)}.M${micros}P${process.pid}Q${counter}.${hostname.replace(/[/:]/g, "_")}`
}

/** RFC 5322 date-time, as in `Sat, 21 Nov 2026 18:00:00 +0000`. */
const rfc5322Date = (date: Date): string => date.toUTCString().replace("GMT", "+0000")

/** The trace fields, CRLF-terminated, in the order a receiving server prepends them. */
const traceFields = (delivery: Delivery, hostname: string, id: string, date: Date): string => {
  const { session, envelope } = delivery
  const sender = Option.match(envelope.mailFrom, { onNone: () => "", onSome: reversePath })
  const recipients = envelope.rcptTo.map((rcpt) => rcpt.mailbox.address)
  const helo = Option.getOrElse(session.heloName, () => session.clientHostname)
  const forClause = recipients.length === 1 ? `\r\n\tfor <${recipients[0]}>` : ""
  return [
    `Return-Path: <${sender}>\r\n`,
    ...recipients.map((rcpt) => `X-Original-To: ${rcpt}\r\n`),
    `Received: from ${helo} (${session.clientHostname} [${session.remoteAddress}])\r\n` +
    `\tby ${hostname} with ${session.transmissionType} id ${id}${forClause};\r\n\t${rfc5322Date(date)}\r\n`
  ].join("")
}

/**
 * Creates `dir` and its missing parents one by one. Not `fs.mkdir`'s
 * `recursive`, which never returns where a parent exists but refuses children
 * (`/proc/x`).
 */
const makeDirectory = async (dir: string): Promise<void> => {
  try {
    await fs.mkdir(dir)
  } catch (error) {
    const code = error instanceof Error && "code" in error ? error.code : undefined
    if (code === "EEXIST" && (await fs.stat(dir)).isDirectory()) return
    const parent = path.dirname(dir)
    if (code !== "ENOENT" || parent === dir) throw error
    await makeDirectory(parent)
    await fs.mkdir(dir).catch(async (again: unknown) => {
      if (!(await fs.stat(dir).then((stat) => stat.isDirectory(), () => false))) throw again
    })
  }
}

const ensureDirectories = (root: string) =>
  Effect.tryPromise({
    try: () => Promise.all(["tmp", "new", "cur"].map((dir) => makeDirectory(path.join(root, dir)))),
    catch: (cause) => new MaildirError({ message: `cannot create the Maildir ${root}: ${String(cause)}` })
  })

/** Streams the message into `tmp/`, fsyncs, and renames into `new/`. */
const deliver = (root: string, hostname: string) =>
(delivery: Delivery, body: Stream.Stream<Uint8Array, Reject.SmtpRejection>): Effect.Effect<string, Reject.SmtpRejection> => {
  const name = uniqueName(hostname)
  const tmp = path.join(root, "tmp", name)
  const final = path.join(root, "new", name)
  const io = <A>(f: () => Promise<A>) => Effect.tryPromise({ try: f, catch: () => storageFailed })
  const write = Effect.acquireUseRelease(
    io(() => fs.open(tmp, "wx", 0o600)),
    (file) =>
      io(() => file.write(traceFields(delivery, hostname, name, new Date()))).pipe(
        Effect.andThen(Stream.runForEach(body, (chunk) => io(() => file.write(chunk)))),
        Effect.andThen(io(() => file.sync()))
      ),
    (file) => Effect.promise(() => file.close())
  )
  const publish = io(() => fs.rename(tmp, final)).pipe(
    Effect.andThen(io(() => fs.open(path.join(root, "new"), "r"))),
    Effect.flatMap((dir) => Effect.ensuring(io(() => dir.sync()), Effect.promise(() => dir.close())))
  )
  return write.pipe(
    Effect.andThen(publish),
    Effect.as(name),
    Effect.onError(() => Effect.promise(() => fs.rm(tmp, { force: true })))
  )
}

/** A Maildir message store. */
export const layer = (options: Options): Layer.Layer<MessageStore, MaildirError> =>
  Layer.effect(
    MessageStore,
    Effect.as(ensureDirectories(options.root), MessageStore.of({ store: deliver(options.root, options.hostname) }))
  )
