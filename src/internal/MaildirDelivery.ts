/**
 * Delivery into a Maildir: every byte on disk, synced, or a `StorageError`.
 *
 * A message is written to `tmp/` (each write repeated until all its bytes are
 * written: a file system may take fewer than asked without an error), its
 * size checked against the bytes written, synced, closed, renamed into `new/`,
 * and `new/` synced. Only then does the store succeed. Whatever fails, the
 * message's files are removed; a removal that fails is logged and never
 * changes the outcome. The files are reached through `Files`, so a test can
 * give a file system that misbehaves.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import type { DataError } from "../phases/Middleware.ts"
import { type Delivery, MessageStore, StorageError } from "../services/MessageStore.ts"
import type { Envelope } from "../services/SmtpTransaction.ts"

/** The Maildir cannot be created or used. */
export class MaildirError extends Schema.TaggedError<MaildirError>()("MaildirError", { message: Schema.String }) {}

/** The parts of a file handle delivery uses. */
export interface FileHandle {
  readonly write: (buffer: Uint8Array, offset: number, length: number) => Promise<{ readonly bytesWritten: number }>
  readonly stat: () => Promise<{ readonly size: number }>
  readonly sync: () => Promise<void>
  readonly close: () => Promise<void>
}

/** Opens files: `node:fs` in production, a misbehaving one in tests. */
export interface Files {
  readonly open: (file: string, flags: string, mode?: number) => Promise<FileHandle>
}

export const nodeFiles: Files = { open: (file, flags, mode) => fs.open(file, flags, mode) }

/** How stored messages end their lines. */
export type LineEndings = "lf" | "crlf"

/** Where and how to deliver. */
export interface Options {
  readonly root: string
  readonly hostname: string
  readonly lineEndings: LineEndings
}

const errorCode = (cause: unknown): unknown => cause instanceof Error && "code" in cause ? cause.code : undefined

/** A failed file operation as a `StorageError`: `Full` for a full disk or quota. */
const storageError = (cause: unknown): StorageError =>
  new StorageError({
    reason: errorCode(cause) === "ENOSPC" || errorCode(cause) === "EDQUOT" ? "Full" : "Io",
    message: cause instanceof Error ? cause.message : String(cause)
  })

const io = <A>(operation: () => Promise<A>): Effect.Effect<A, StorageError> => Effect.tryPromise({ try: operation, catch: storageError })

/** Writes all of `bytes`, however many writes that takes. */
const writeAll = (file: FileHandle, bytes: Uint8Array): Effect.Effect<void, StorageError> =>
  io(async () => {
    for (let offset = 0; offset < bytes.length;) {
      const { bytesWritten } = await file.write(bytes, offset, bytes.length - offset)
      if (!(bytesWritten > 0)) throw new Error(`the file system took no bytes of ${bytes.length - offset}`)
      offset += bytesWritten
    }
  })

const CR = 0x0d
const LF = 0x0a

/** Turns CRLF into LF across chunk boundaries; `end` gives back a CR left at the very end. */
const crlfToLf = () => {
  let heldCr = false
  return {
    push: (chunk: Uint8Array): Uint8Array => {
      if (chunk.length === 0) return chunk
      if (!heldCr && chunk.indexOf(CR) === -1) return chunk
      const out = new Uint8Array(chunk.length + 1)
      let length = 0
      if (heldCr && chunk[0] !== LF) out[length++] = CR
      heldCr = false
      for (let i = 0; i < chunk.length; i++) {
        const byte = chunk[i]!
        if (byte !== CR) out[length++] = byte
        else if (i === chunk.length - 1) heldCr = true
        else if (chunk[i + 1] !== LF) out[length++] = CR
      }
      return out.subarray(0, length)
    },
    end: (): Uint8Array => heldCr ? Uint8Array.of(CR) : new Uint8Array(0)
  }
}

let counter = 0

/**
 * A Maildir unique name: time, microseconds, process id, counter, random
 * bytes (replicas of one container image share a process id and a host name),
 * host. A rename into `new/` replaces a file of the same name.
 */
const uniqueName = (hostname: string): string => {
  const now = Date.now()
  const micros = (now % 1000) * 1000 + Number((process.hrtime.bigint() / 1000n) % 1000n)
  counter = (counter + 1) % 1_000_000
  const random = randomBytes(6).toString("hex")
  return `${Math.floor(now / 1000)}.M${micros}P${process.pid}Q${counter}R${random}.${hostname.replace(/[/:]/g, "_")}`
}

/** The trace fields a delivering server prepends (RFC 5321 section 4.4), each line ended with `eol`. */
export const traceFields = (envelope: Envelope, eol: string): string => [`Return-Path: <${envelope.mailFrom.address}>${eol}`, ...envelope.rcptTo.map((rcpt) => `X-Original-To: ${rcpt.address}${eol}`)].join("")

/** A file operation whose failure keeps its own error (its code and path) for the log. */
const attempt = <A>(operation: () => Promise<A>): Effect.Effect<A, Error> =>
  Effect.tryPromise({ try: operation, catch: (cause) => cause instanceof Error ? cause : new Error(String(cause)) })

/** Removes `file`, logging rather than failing: a clean-up never changes what the client is told. */
const remove = (file: string) =>
  attempt(() => fs.rm(file, { force: true })).pipe(
    Effect.catch((error) =>
      Effect.logWarning("could not remove a file of a message that was not stored").pipe(Effect.annotateLogs({ file, error: error.message }))
    )
  )

const encoder = new TextEncoder()

/** The store: each message into `tmp/`, then `new/`, all of it synced before it succeeds. */
export const store = (options: Options, files: Files = nodeFiles): MessageStore["Service"] => {
  const eol = options.lineEndings === "lf" ? "\n" : "\r\n"
  const newDir = path.join(options.root, "new")
  return MessageStore.of({
    store: (delivery: Delivery, body: Stream.Stream<Uint8Array, DataError>) => {
      const name = uniqueName(options.hostname)
      const tmp = path.join(options.root, "tmp", name)
      const final = path.join(newDir, name)
      let closed = false
      let published = false
      const write = Effect.acquireUseRelease(
        io(() => files.open(tmp, "wx", 0o600)),
        (file) =>
          Effect.gen(function*() {
            let size = 0
            const put = (bytes: Uint8Array) => Effect.map(writeAll(file, bytes), () => void (size += bytes.length))
            yield* put(encoder.encode(traceFields(delivery.envelope, eol)))
            if (options.lineEndings === "lf") {
              const convert = crlfToLf()
              yield* Stream.runForEach(body, (chunk) => put(convert.push(chunk)))
              yield* put(convert.end())
            } else {
              yield* Stream.runForEach(body, put)
            }
            const { size: onDisk } = yield* io(() => file.stat())
            if (onDisk !== size) {
              return yield* new StorageError({ reason: "Io", message: `${tmp} holds ${onDisk} bytes, ${size} were written` })
            }
            yield* io(() => file.sync())
            // A close that fails fails the delivery: it may be where the file system reports the error.
            closed = true
            yield* io(() => file.close())
          }),
        (file) => closed ? Effect.void : Effect.promise(() => file.close().catch(() => undefined))
      )
      const publish = Effect.gen(function*() {
        yield* io(() => fs.rename(tmp, final))
        published = true
        const dir = yield* io(() => files.open(newDir, "r"))
        yield* Effect.ensuring(io(() => dir.sync()), Effect.promise(() => dir.close().catch(() => undefined)))
      })
      return write.pipe(
        Effect.andThen(publish),
        Effect.as(name),
        Effect.onError(() => Effect.andThen(remove(tmp), published ? remove(final) : Effect.void))
      )
    }
  })
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
    // Something there already: whether it is a directory is checked next, with a message that says so.
    if (errorCode(error) === "EEXIST") return
    const parent = path.dirname(dir)
    if (errorCode(error) !== "ENOENT" || parent === dir) throw error
    await makeDirectory(parent)
    await fs.mkdir(dir).catch((again: unknown) => {
      if (errorCode(again) !== "EEXIST") throw again
    })
  }
}

/** Files in `tmp/` older than this are leftovers of deliveries that never finished (the Maildir convention). */
const STALE_MILLIS = 36 * 3600 * 1000

const FOLDERS = ["tmp", "new", "cur"] as const

/**
 * Makes the Maildir ready: its three folders exist, are directories and are
 * on one file system (a rename between them must be atomic), and leftovers in
 * `tmp/` older than 36 hours are removed.
 */
export const prepare = (root: string): Effect.Effect<void, MaildirError> =>
  Effect.gen(function*() {
    const fail = (problem: string) => new MaildirError({ message: `the Maildir ${root}: ${problem}` })
    const stats = yield* Effect.tryPromise({
      try: async () => {
        for (const folder of FOLDERS) await makeDirectory(path.join(root, folder))
        return Promise.all(FOLDERS.map((folder) => fs.stat(path.join(root, folder))))
      },
      catch: (cause) => fail(`cannot create it: ${String(cause)}`)
    })
    for (const [index, stat] of stats.entries()) {
      if (!stat.isDirectory()) return yield* fail(`${FOLDERS[index]} is not a directory`)
      if (stat.dev !== stats[0]?.dev) return yield* fail("tmp, new and cur must be on one file system, or a rename between them is not atomic")
    }
    yield* removeStale(path.join(root, "tmp"))
  })

const removeStale = (tmp: string) =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const entries = yield* attempt(() => fs.readdir(tmp))
    let removed = 0
    for (const entry of entries) {
      const file = path.join(tmp, entry)
      const stat = yield* attempt(() => fs.lstat(file))
      if (stat.isFile() && now - stat.mtimeMs > STALE_MILLIS) {
        yield* attempt(() => fs.rm(file))
        removed++
      }
    }
    if (removed > 0) yield* Effect.logInfo("removed leftovers older than 36 hours from tmp/").pipe(Effect.annotateLogs({ files: removed }))
  }).pipe(Effect.catch((error) => Effect.logWarning("could not clean up tmp/").pipe(Effect.annotateLogs({ error: error.message }))))
