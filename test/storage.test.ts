/**
 * Storage faults on real file systems: a 250 means the whole message is on
 * disk and synced, whatever the disk does. A small tmpfs filled until writes
 * fail, file handles that write part of what they are given or fail at each
 * step, folders replaced under the server, a kill -9 under load, and a client
 * that leaves between its final dot and the reply.
 */
import { describe, expect, it, layer } from "@effect/vitest"
import { Context, type Duration, Effect, Exit, Fiber, Layer, Logger, Option, References, Schedule, Scope } from "effect"
import { execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { format } from "node:util"
import { deliver, Maildir, Mailbox, MemoryMessages, MessageStore, SmtpApp, SmtpServer, SmtpServerConfig } from "../src/index.ts"
import * as MaildirDelivery from "../src/internal/MaildirDelivery.ts"
import { SmtpTest } from "../src/testing/index.ts"
import { connect, send, startMessage } from "./support.ts"

/** A new temporary directory, removed with the scope. */
const temporary = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(tmpdir(), "effect-smtp-storage-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/** Whether this machine lets the tests mount a tmpfs (they run as root here). */
const mountable = (() => {
  const dir = fs.mkdtempSync(path.join(tmpdir(), "effect-smtp-mount-"))
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir], { stdio: "ignore" })
    execFileSync("umount", [dir], { stdio: "ignore" })
    return true
  } catch {
    return false
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})()
const needsMount = mountable ? "" : " (skipped: this machine does not allow mounting a tmpfs)"

/** A tmpfs of `size` mounted on a new directory for the scope. */
const tmpfs = (size: string) =>
  Effect.flatMap(temporary, (dir) =>
    Effect.acquireRelease(
      Effect.sync(() => {
        execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir])
        return dir
      }),
      () => Effect.sync(() => execFileSync("umount", ["-l", dir]))
    ))

/** A server on 127.0.0.1 that delivers with `store`, for the scope. */
const serveStore = (store: Layer.Layer<MessageStore, unknown>) =>
  Layer.build(
    SmtpServer.layer(SmtpApp.empty.pipe(deliver)).pipe(
      Layer.provide(store),
      Layer.provide(SmtpServerConfig.layer({ host: "127.0.0.1", port: 0, hostname: "mx.test" }))
    )
  ).pipe(Effect.map((context) => Context.get(context, SmtpServer).address.port))

/** A message whose body names it, `size` bytes of text lines. */
const message = (id: string, size: number): Buffer => {
  const line = `${id} ${"x".repeat(70)}\r\n`
  return Buffer.from(`Subject: ${id}\r\n\r\n${line.repeat(Math.ceil(size / line.length))}`, "latin1")
}

/** The message as stored: Unix line endings. */
const unix = (bytes: Buffer) => Buffer.from(bytes.toString("latin1").replaceAll("\r\n", "\n"), "latin1")

/**
 * A stored file's message, after the trace fields the store adds (`Return-Path:`, then `X-Original-To:` per
 * recipient) and the command's `Received:` (folded: its other lines start with a tab).
 */
const body = (file: Buffer): Buffer => {
  let at = 0
  while (/^(?:Return-Path: |X-Original-To: |Received: |\t)/.test(file.toString("latin1", at, at + 20))) at = file.indexOf(0x0a, at) + 1
  return file.subarray(at)
}

const folder = (root: string, name: "new" | "tmp") => fs.readdirSync(path.join(root, name)).sort()
const storedBodies = (root: string) => folder(root, "new").map((name) => body(fs.readFileSync(path.join(root, "new", name))))

const sendRaw = (port: number, id: string, bytes: Buffer) =>
  send(port, { envelope: { from: "a@sender.test", to: ["b@example.test"] }, raw: bytes }).pipe(Effect.map((result) => ({ id, ...result })))

/** A file system whose handles behave as `change` says, on top of node's. */
const misbehaving = (change: (handle: MaildirDelivery.FileHandle) => Partial<MaildirDelivery.FileHandle>): MaildirDelivery.Files => ({
  open: async (file, flags, mode) => {
    const opened = await MaildirDelivery.nodeFiles.open(file, flags, mode)
    const handle: MaildirDelivery.FileHandle = {
      write: (buffer, offset, length) => opened.write(buffer, offset, length),
      stat: () => opened.stat(),
      sync: () => opened.sync(),
      close: () => opened.close()
    }
    return { ...handle, ...change(handle) }
  }
})

/** A Maildir store in `root` over `files`, with the Maildir's own start-up. */
const maildirOver = (root: string, files: MaildirDelivery.Files) =>
  Layer.effect(
    MessageStore,
    Effect.as(MaildirDelivery.prepare(root), MaildirDelivery.store({ root, hostname: "mx.test", lineEndings: "lf" }, files))
  )

/** A Maildir store in `root` that waits `delay` before each delivery, so a client can leave before it is done. */
const slowMaildir = (root: string, delay: Duration.Input) => {
  const maildir = MaildirDelivery.store({ root, hostname: "mx.test", lineEndings: "lf" })
  return Layer.effect(
    MessageStore,
    Effect.as(
      MaildirDelivery.prepare(root),
      MessageStore.of({ store: (delivery, body) => Effect.andThen(Effect.sleep(delay), maildir.store(delivery, body)) })
    )
  )
}

/** Log lines, as "Level message", for the current test. */
const capture = () => {
  const lines: Array<string> = []
  const logger = Logger.make<unknown, void>((entry) =>
    void lines.push(
      `${entry.logLevel} ${format(...[entry.message].flat())} ${JSON.stringify(entry.fiber.getRef(References.CurrentLogAnnotations))}`
    )
  )
  return { lines, layer: Logger.layer([logger]) }
}

describe("storage", () => {
  it.live(`a full disk, filled and freed again and again: every 250 is whole on disk, the rest 452 4.3.1 or 451 4.3.0${needsMount}`, () =>
    Effect.gen(function*() {
      if (!mountable) return
      const root = path.join(yield* tmpfs("2m"), "mail")
      const port = yield* serveStore(Maildir.layer({ root, hostname: "mx.test" }))
      const refusals: Array<string> = []
      // Eight cycles (the short write that truncates a message lands on a message's last chunk only now and then).
      for (let cycle = 0; cycle < 8; cycle++) {
        const sent = new Map<string, Buffer>()
        const results: Array<{ readonly id: string; readonly ok: boolean; readonly response: string }> = []
        // Three clients at a time until the disk has refused a few messages (bounded: 20 rounds).
        for (let round = 0; round < 20 && results.filter((result) => !result.ok).length < 3; round++) {
          const batch = [0, 1, 2].map((client) => {
            const id = `m${cycle}-${round}-${client}`
            const bytes = message(id, 40_000 + ((cycle * 31 + round * 17 + client * 7) % 23) * 6_007)
            sent.set(id, bytes)
            return sendRaw(port, id, bytes)
          })
          results.push(...(yield* Effect.all(batch, { concurrency: "unbounded" })))
        }
        const accepted = results.filter((result) => result.ok)
        const refused = results.filter((result) => !result.ok)
        expect(accepted.length).toBeGreaterThan(0)
        expect(refused.length).toBeGreaterThan(0)
        for (const result of refused) expect(result.response).toMatch(/^(452 4\.3\.1 |451 4\.3\.0 )/)
        refusals.push(...refused.map((result) => result.response))
        // Exactly the accepted messages are in new/, each whole; nothing is left in tmp/.
        const stored = storedBodies(root)
        expect(stored, `cycle ${cycle}`).toHaveLength(accepted.length)
        for (const result of accepted) expect(stored.some((file) => file.equals(unix(sent.get(result.id)!))), result.id).toBe(true)
        expect(folder(root, "tmp")).toEqual([])
        // Room again for the next cycle.
        for (const name of folder(root, "new")) fs.rmSync(path.join(root, "new", name))
      }
      expect(refusals.some((response) => response.startsWith("452 4.3.1 Insufficient system storage"))).toBe(true)
      const again = message("again", 150_000)
      expect(yield* sendRaw(port, "again", again)).toMatchObject({ ok: true })
      expect(storedBodies(root)).toEqual([unix(again)])
    }), 120_000)

  it.live("the reply names the message as the log line and the file in new/ do: 250 2.0.0 Ok: queued as <id>", () =>
    Effect.gen(function*() {
      const logs = capture()
      const root = path.join(yield* temporary, "mail")
      const port = yield* serveStore(Maildir.layer({ root, hostname: "mx.test" })).pipe(Effect.provide(logs.layer))
      const result = yield* sendRaw(port, "named", message("named", 2_000))
      const [file, ...others] = folder(root, "new")
      expect(others).toEqual([])
      expect(result.response).toBe(`250 2.0.0 Ok: queued as ${file}`)
      expect(logs.lines.filter((line) => line.startsWith("Info message accepted"))).toEqual([
        expect.stringContaining(`"id":"${file}"`)
      ])
    }))

  it.live("a file system that writes half of what it is given: every byte still reaches the file", () =>
    Effect.gen(function*() {
      const root = path.join(yield* temporary, "mail")
      let writes = 0
      const half = misbehaving((handle) => ({
        write: (buffer, offset, length) => {
          writes++
          return handle.write(buffer, offset, Math.max(1, Math.floor(length / 2)))
        }
      }))
      const port = yield* serveStore(maildirOver(root, half))
      const bytes = message("halves", 300_000)
      expect(yield* sendRaw(port, "halves", bytes)).toMatchObject({ ok: true })
      expect(storedBodies(root)).toEqual([unix(bytes)])
      expect(writes).toBeGreaterThan(40)
    }))

  it.live("each step of a delivery that fails: the right temporary reply, nothing in new/ or tmp/, no defect", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [string, (handle: MaildirDelivery.FileHandle) => Partial<MaildirDelivery.FileHandle>, RegExp]> = [
        ["a write that takes nothing", () => ({ write: async () => ({ bytesWritten: 0 }) }), /^451 4\.3\.0 /],
        ["a full disk on write", () => ({ write: () => Promise.reject(Object.assign(new Error("no space"), { code: "ENOSPC" })) }), /^452 4\.3\.1 /],
        ["a quota on write", () => ({ write: () => Promise.reject(Object.assign(new Error("quota"), { code: "EDQUOT" })) }), /^452 4\.3\.1 /],
        ["a size that does not add up", (handle) => ({ stat: async () => ({ size: (await handle.stat()).size - 1 }) }), /^451 4\.3\.0 /],
        ["fsync failing", () => ({ sync: () => Promise.reject(Object.assign(new Error("io"), { code: "EIO" })) }), /^451 4\.3\.0 /],
        ["close failing", (handle) => ({ close: () => handle.close().then(() => Promise.reject(Object.assign(new Error("io"), { code: "EIO" }))) }), /^451 4\.3\.0 /]
      ]
      for (const [what, change, reply] of cases) {
        const logs = capture()
        const root = path.join(yield* temporary, "mail")
        const port = yield* serveStore(maildirOver(root, misbehaving(change))).pipe(Effect.provide(logs.layer))
        const result = yield* sendRaw(port, what, message(what, 20_000))
        expect(result.ok, what).toBe(false)
        expect(result.response, what).toMatch(reply)
        expect(folder(root, "new"), what).toEqual([])
        expect(folder(root, "tmp"), what).toEqual([])
        expect(logs.lines.filter((line) => line.startsWith("Error")), what).toEqual([])
      }
    }))

  it.live("tmp/ replaced by a file: 451 4.3.0; the clean-up that fails is a warning, not a defect", () =>
    Effect.gen(function*() {
      const logs = capture()
      const root = path.join(yield* temporary, "mail")
      const port = yield* serveStore(Maildir.layer({ root, hostname: "mx.test" })).pipe(Effect.provide(logs.layer))
      fs.rmSync(path.join(root, "tmp"), { recursive: true })
      fs.writeFileSync(path.join(root, "tmp"), "not a folder")
      const result = yield* sendRaw(port, "x", message("x", 10_000))
      expect(result).toMatchObject({ ok: false })
      expect(result.response).toMatch(/^451 4\.3\.0 /)
      expect(logs.lines.filter((line) => line.startsWith("Error"))).toEqual([])
      expect(logs.lines.some((line) => line.startsWith("Warn message not stored"))).toBe(true)
      // The clean-up that failed says why.
      expect(logs.lines.some((line) => line.startsWith("Warn could not remove") && line.includes("ENOTDIR"))).toBe(true)
      expect(folder(root, "new")).toEqual([])
    }))

  it.live("start-up: leftovers older than 36 hours leave tmp/, newer ones stay; the folders must be directories", () =>
    Effect.gen(function*() {
      const root = path.join(yield* temporary, "mail")
      yield* Layer.build(Maildir.layer({ root, hostname: "mx.test" }))
      const old = path.join(root, "tmp", "old")
      const recent = path.join(root, "tmp", "recent")
      fs.writeFileSync(old, "left by a crash two days ago")
      fs.writeFileSync(recent, "a delivery in progress elsewhere")
      const daysAgo = new Date(Date.now() - 37 * 3600 * 1000)
      fs.utimesSync(old, daysAgo, daysAgo)
      yield* Layer.build(Maildir.layer({ root, hostname: "mx.test" }))
      expect(folder(root, "tmp")).toEqual(["recent"])

      fs.rmSync(path.join(root, "new"), { recursive: true })
      fs.writeFileSync(path.join(root, "new"), "")
      const error = yield* Layer.build(Maildir.layer({ root, hostname: "mx.test" })).pipe(Effect.flip)
      expect(error.message).toBe(`the Maildir ${root}: new is not a directory`)
    }))

  it.live(`start-up: a folder on another file system is refused (a rename into new/ would not be atomic)${needsMount}`, () =>
    Effect.gen(function*() {
      if (!mountable) return
      const root = path.join(yield* temporary, "mail")
      fs.mkdirSync(path.join(root, "new"), { recursive: true })
      const mounted = path.join(root, "new")
      yield* Effect.acquireRelease(
        Effect.sync(() => execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", mounted])),
        () => Effect.sync(() => execFileSync("umount", ["-l", mounted]))
      )
      const error = yield* Layer.build(Maildir.layer({ root, hostname: "mx.test" })).pipe(Effect.flip)
      expect(error.message).toMatch(/must be on one file system/)
    }))

  it.live("a client that leaves after its final dot, before the reply: the message is stored all the same", () =>
    Effect.gen(function*() {
      const root = path.join(yield* temporary, "mail")
      const slow = slowMaildir(root, "300 millis")
      const port = yield* serveStore(slow)
      const client = yield* connect(port)
      yield* client.reply
      const replies = yield* startMessage(client)
      expect(replies[3]).toMatch(/^354 /)
      const bytes = message("left", 5_000)
      yield* client.write(Buffer.concat([bytes, Buffer.from(".\r\n")]))
      client.socket.destroy()
      const stored = yield* Effect.sync(() => storedBodies(root)).pipe(
        Effect.repeat({ until: (files) => files.length > 0, schedule: Schedule.spaced("50 millis") }),
        Effect.timeoutOption("5 seconds")
      )
      expect(Option.getOrElse(stored, () => [])).toEqual([unix(bytes)])
    }))

  it.live("shutdown waits for a message being stored for a client that left after its dot; a hung one is interrupted at shutdownTimeout", () =>
    Effect.gen(function*() {
      for (const [delay, stored] of [["500 millis", 1], ["1 hour", 0]] as const) {
        const root = path.join(yield* temporary, "mail")
        const slow = slowMaildir(root, delay)
        const scope = yield* Scope.make()
        const context = yield* Layer.buildWithScope(
          SmtpServer.layer(SmtpApp.empty.pipe(deliver)).pipe(
            Layer.provide(slow),
            Layer.provide(SmtpServerConfig.layer({ host: "127.0.0.1", port: 0, hostname: "mx.test", shutdownTimeout: "1 second" }))
          ),
          scope
        )
        const server = Context.get(context, SmtpServer)
        const client = yield* connect(server.address.port)
        yield* client.reply
        yield* startMessage(client)
        yield* client.write(Buffer.concat([message("orphan", 5_000), Buffer.from(".\r\n")]))
        client.socket.destroy()
        yield* server.connections.pipe(Effect.repeat({ until: (open) => open === 0, schedule: Schedule.spaced("20 millis") }))
        // The scope closes once the delivery is done (or, hung, interrupted after shutdownTimeout).
        yield* Scope.close(scope, Exit.void)
        expect(folder(root, "new"), delay).toHaveLength(stored)
        expect(folder(root, "tmp"), delay).toEqual([])
      }
    }))

  it.live("a client that leaves after its dot once shutdown has begun: shutdown still waits for its message to be stored", () =>
    Effect.gen(function*() {
      const root = path.join(yield* temporary, "mail")
      const slow = slowMaildir(root, "800 millis")
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        SmtpServer.layer(SmtpApp.empty.pipe(deliver)).pipe(
          Layer.provide(slow),
          Layer.provide(SmtpServerConfig.layer({ host: "127.0.0.1", port: 0, hostname: "mx.test", shutdownTimeout: "5 seconds" }))
        ),
        scope
      )
      const client = yield* connect(Context.get(context, SmtpServer).address.port)
      yield* client.reply
      yield* startMessage(client)
      yield* client.write(Buffer.concat([message("late-leaver", 5_000), Buffer.from(".\r\n")]))
      yield* Effect.sleep("100 millis")
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* Effect.sleep("50 millis")
      client.socket.destroy()
      yield* Fiber.join(closing)
      expect(folder(root, "new")).toHaveLength(1)
      expect(folder(root, "tmp")).toEqual([])
    }))

  it.live("a message still being stored for a client that left holds that client's connection slot until it is stored", () =>
    Effect.gen(function*() {
      const root = path.join(yield* temporary, "mail")
      const slow = slowMaildir(root, "600 millis")
      const context = yield* Layer.build(
        SmtpServer.layer(SmtpApp.empty.pipe(deliver)).pipe(
          Layer.provide(slow),
          Layer.provide(SmtpServerConfig.layer({ host: "127.0.0.1", port: 0, hostname: "mx.test", maxConnectionsPerClient: 1 }))
        )
      )
      const server = Context.get(context, SmtpServer)
      const first = yield* connect(server.address.port)
      yield* first.reply
      yield* startMessage(first)
      yield* first.write(Buffer.concat([message("slot", 5_000), Buffer.from(".\r\n")]))
      first.socket.destroy()
      yield* server.connections.pipe(Effect.repeat({ until: (open) => open === 0, schedule: Schedule.spaced("20 millis") }))
      const second = yield* connect(server.address.port)
      expect(yield* second.reply).toMatch(/^421 4\.7\.0 /)
      yield* Effect.sync(() => folder(root, "new")).pipe(
        Effect.repeat({ until: (files) => files.length === 1, schedule: Schedule.spaced("50 millis") }),
        Effect.timeout("5 seconds")
      )
      const third = yield* connect(server.address.port)
      expect(yield* third.reply).toMatch(/^220 /)
    }))

  it.live("a message over the size limit only before the guard strips it is refused with 552 and not stored", () =>
    Effect.gen(function*() {
      const context = yield* Layer.build(
        SmtpServer.layer(SmtpApp.empty.pipe(deliver)).pipe(
          Layer.provideMerge(MessageStore.layerMemory),
          Layer.provide(SmtpServerConfig.layer({ host: "127.0.0.1", port: 0, maxMessageSize: 1000, nulBytes: "strip" }))
        )
      )
      const port = Context.get(context, SmtpServer).address.port
      const padded = Buffer.concat([Buffer.from(`Subject: x\r\n\r\n${"y".repeat(900)}`), Buffer.alloc(150), Buffer.from("\r\n")])
      const result = yield* sendRaw(port, "padded", padded)
      expect(result.ok).toBe(false)
      expect(result.response).toMatch(/^552 5\.3\.4 /)
      expect(yield* Context.get(context, MemoryMessages).all).toEqual([])
    }))

  it.live("kill -9 under load: every 250 is on disk, byte-exact after the trace fields; new/ holds only whole messages", () =>
    Effect.gen(function*() {
      const root = path.join(yield* temporary, "mail")
      const program = new URL("../src/bin/effect-smtp.ts", import.meta.url).pathname
      const child = spawn(process.execPath, [program], {
        env: { ...process.env, SMTP_HOST: "127.0.0.1", SMTP_PORT: "0", SMTP_HOSTNAME: "mx.test", SMTP_MAILDIR: root },
        stdio: ["ignore", "pipe", "pipe"]
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => child.kill("SIGKILL")))
      const port = yield* Effect.callback<number, Error>((resume) => {
        let output = ""
        child.stdout.on("data", (chunk: Buffer) => {
          output += chunk.toString()
          const match = /listening on 127\.0\.0\.1:(\d+)/.exec(output)
          if (match !== null) resume(Effect.succeed(Number(match[1])))
        })
        child.once("exit", (code) => resume(Effect.fail(new Error(`exited with ${code}: ${output}`))))
      })
      const sent = new Map<string, Buffer>()
      const acknowledged: Array<string> = []
      // Four clients send until the server dies (bounded: 100 messages each).
      const client = (n: number) =>
        Effect.gen(function*() {
          for (let i = 0; i < 100; i++) {
            const id = `c${n}-${i}`
            const bytes = message(id, 20_000 + ((n * 7919 + i * 104_729) % 30_000))
            sent.set(id, bytes)
            const result = yield* sendRaw(port, id, bytes)
            if (!result.ok) return
            acknowledged.push(id)
          }
        })
      const load = yield* Effect.forkChild(Effect.all([0, 1, 2, 3].map(client), { concurrency: "unbounded" }))
      yield* Effect.sleep("700 millis")
      child.kill("SIGKILL")
      yield* Fiber.await(load).pipe(Effect.timeout("30 seconds"))
      expect(acknowledged.length).toBeGreaterThan(0)
      const stored = storedBodies(root)
      for (const id of acknowledged) expect(stored.some((file) => file.equals(unix(sent.get(id)!))), id).toBe(true)
      // A message the server had stored but not yet acknowledged may be there too; none is partial.
      const whole = new Set([...sent.values()].map((bytes) => unix(bytes).toString("latin1")))
      for (const file of stored) expect(whole.has(file.toString("latin1"))).toBe(true)
    }), 60_000)
})

layer(SmtpTest.layer(SmtpApp.empty.pipe(deliver)).pipe(Layer.provideMerge(MessageStore.layerMemory)))("memory store", (it) => {
  it.effect("its fault switch fails stores as a full or a broken disk would: 452 4.3.1, 451 4.3.0, then 250 again", () =>
    Effect.gen(function*() {
      const memory = yield* MemoryMessages
      const client = yield* SmtpTest.connect()
      yield* client.ehlo("client.test")
      const mail = { from: "a@x.test", to: ["b@x.test"], message: "Subject: hi\r\n\r\nhello\r\n" }
      yield* memory.failWith("Full")
      expect(yield* client.send(mail)).toMatchObject({ code: 452, enhanced: "4.3.1" })
      yield* memory.failWith("Io")
      expect(yield* client.send(mail)).toMatchObject({ code: 451, enhanced: "4.3.0" })
      yield* memory.failWith(undefined)
      expect(yield* client.send(mail)).toMatchObject({ code: 250 })
      expect(yield* SmtpTest.messages).toHaveLength(1)
    }))
})

describe("trace fields", () => {
  it("are the envelope: Return-Path, then X-Original-To per recipient", () => {
    const rcpt = (localPart: string) => ({ address: `${localPart}@x.test`, mailbox: new Mailbox({ raw: `${localPart}@x.test`, localPart, domain: "x.test" }), params: { extra: {} } })
    const envelope = { id: 1, mailFrom: { address: "s@y.test", mailbox: Option.none(), params: { smtpUtf8: false, requireTls: false, extra: {} } }, rcptTo: [rcpt("a"), rcpt("b")] as const }
    expect(MaildirDelivery.traceFields(envelope, "\n")).toBe("Return-Path: <s@y.test>\nX-Original-To: a@x.test\nX-Original-To: b@x.test\n")
  })
})
