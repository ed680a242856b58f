/**
 * The main program as a user runs it: a child process on a free port with a
 * temporary Maildir, driven by nodemailer and raw sockets.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, readdirSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { connect, send, startMessage } from "./support.ts"

interface Running {
  readonly port: number
  readonly maildir: string
  readonly child: ChildProcess
  readonly output: () => string
}

const program = new URL("../src/bin/effect-smtp.ts", import.meta.url).pathname

/** Starts `npm start`'s program with `env` and waits for its listening line. */
const start = (env: Record<string, string> = {}) =>
  Effect.acquireRelease(
    Effect.callback<Running, Error>((resume) => {
      const maildir = path.join(mkdtempSync(path.join(tmpdir(), "effect-smtp-")), "mail")
      const child = spawn(process.execPath, [program], {
        env: { ...process.env, SMTP_HOST: "127.0.0.1", SMTP_PORT: "0", SMTP_HOSTNAME: "mx.test", SMTP_MAILDIR: maildir, ...env },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let output = ""
      const collect = (chunk: Buffer) => {
        output += chunk.toString()
        const match = /listening on 127\.0\.0\.1:(\d+)/.exec(output)
        if (match !== null) resume(Effect.succeed({ port: Number(match[1]), maildir, child, output: () => output }))
      }
      child.stdout.on("data", collect)
      child.stderr.on("data", collect)
      child.once("exit", (code) => resume(Effect.fail(new Error(`exited with ${code}: ${output}`))))
    }),
    (running) => Effect.sync(() => running.child.kill("SIGKILL"))
  )

/** Waits for the child to exit and returns its exit code. */
const exited = (child: ChildProcess) =>
  Effect.callback<number | null>((resume) => {
    if (child.exitCode !== null) return resume(Effect.succeed(child.exitCode))
    child.once("exit", (code) => resume(Effect.succeed(code)))
  })

const files = (maildir: string, dir: "new" | "tmp") => readdirSync(path.join(maildir, dir)).sort()
const stored = (maildir: string) => files(maildir, "new").map((name) => readFileSync(path.join(maildir, "new", name)))

/** Splits a stored file into its trace fields (up to the end of `Received:`) and the message as sent. */
const split = (file: Buffer) => {
  const text = file.toString("latin1")
  let end = text.indexOf("Received: ")
  do end = text.indexOf("\r\n", end) + 2
  while (text[end] === "\t")
  return { trace: text.slice(0, end), body: file.subarray(end) }
}

const raw = (lines: ReadonlyArray<string>) => Buffer.from(lines.join("\r\n") + "\r\n", "utf8")
const tls = { ignoreTLS: false, requireTLS: true, tls: { rejectUnauthorized: false } }

describe("main program", () => {
  it.live("stores an accepted message byte-exact in new/, after the trace fields", () =>
    Effect.gen(function*() {
      const server = yield* start()
      const message = raw(["From: a@sender.test", "To: b@example.test", "Subject: hello", "", "line one", ".leading dot", "é 8-bit"])
      const result = yield* send(server.port, { envelope: { from: "a@sender.test", to: ["b@example.test"] }, raw: message })
      expect(result).toMatchObject({ ok: true })
      const [file] = stored(server.maildir)
      expect(file).toBeDefined()
      const { trace, body } = split(file!)
      expect(body.equals(message)).toBe(true)
      expect(trace).toMatch(/^Return-Path: <a@sender\.test>\r\nX-Original-To: b@example\.test\r\nReceived: from /)
      expect(trace).toMatch(/\[127\.0\.0\.1\]\)\r\n\tby mx\.test with ESMTP id \S+\r\n\tfor <b@example\.test>;\r\n\t\w{3}, /)
      expect(files(server.maildir, "tmp")).toEqual([])
    }))

  it.live("STARTTLS with a self-signed certificate, AUTH required when users are configured", () =>
    Effect.gen(function*() {
      const server = yield* start({ SMTP_AUTH_USERS: "alice:wonder,bob:builder" })
      const mail = { from: "alice@example.test", to: "x@elsewhere.test", text: "hi" }
      expect(yield* send(server.port, mail, tls)).toMatchObject({ ok: false, code: 530 })
      expect(yield* send(server.port, mail, { ...tls, auth: { user: "alice", pass: "nope" } })).toMatchObject({ ok: false, code: 535 })
      expect(yield* send(server.port, mail, { ...tls, auth: { user: "alice", pass: "wonder" } })).toMatchObject({ ok: true })
      const plain = yield* send(server.port, mail, { auth: { user: "alice", pass: "wonder" } })
      expect(plain.ok).toBe(false)
      const files = stored(server.maildir)
      expect(files).toHaveLength(1)
      expect(files[0]!.toString("latin1")).toMatch(/with ESMTPSA id /)
    }))

  it.live("several recipients, relay denied for other domains, UTF-8 addresses and a 10 MB attachment", () =>
    Effect.gen(function*() {
      const server = yield* start({ SMTP_DOMAINS: "example.test,other.test" })
      const several = yield* send(server.port, {
        from: "s@sender.test",
        to: ["a@example.test", "b@other.test"],
        text: "to both"
      })
      expect(several).toMatchObject({ ok: true })
      const relay = yield* send(server.port, { from: "s@sender.test", to: "c@elsewhere.test", text: "x" })
      expect(relay).toMatchObject({ ok: false, code: 550 })
      expect(relay.ok ? "" : relay.response).toMatch(/^550 5\.7\.1 /)
      const utf8 = raw(["From: josé@sender.test", "To: zoë@example.test", "Subject: ünïcode", "", "héllo wörld ✓"])
      const international = yield* send(server.port, { envelope: { from: "josé@sender.test", to: ["zoë@example.test"] }, raw: utf8 })
      expect(international).toMatchObject({ ok: true })
      const attachment = Buffer.alloc(10 * 1024 * 1024, "effect-smtp ")
      const big = yield* send(server.port, {
        from: "s@sender.test",
        to: "a@example.test",
        text: "attached",
        attachments: [{ filename: "big.bin", content: attachment }]
      })
      expect(big).toMatchObject({ ok: true })
      const files = stored(server.maildir)
      expect(files).toHaveLength(3)
      const texts = files.map((file) => file.toString("utf8"))
      expect(texts.some((text) => /X-Original-To: a@example\.test\r\nX-Original-To: b@other\.test\r\n/.test(text))).toBe(true)
      expect(files.some((file) => split(file).body.equals(utf8))).toBe(true)
      expect(Math.max(...files.map((file) => file.length))).toBeGreaterThan(10 * 1024 * 1024)
    }))

  it.live("rejected messages leave nothing behind: oversize and too many recipients", () =>
    Effect.gen(function*() {
      const server = yield* start({ SMTP_MAX_MESSAGE_SIZE: "20000", SMTP_MAX_RECIPIENTS: "2" })
      const tooBig = yield* send(server.port, { from: "a@x.test", to: "b@x.test", text: "z".repeat(50_000) })
      expect(tooBig).toMatchObject({ ok: false, code: 552 })
      const client = yield* connect(server.port)
      yield* client.reply
      yield* client.write("EHLO raw.test\r\n")
      yield* client.reply
      yield* client.write("MAIL FROM:<a@x.test>\r\nRCPT TO:<1@x.test>\r\nRCPT TO:<2@x.test>\r\nRCPT TO:<3@x.test>\r\n")
      const replies = yield* Effect.forEach([1, 2, 3, 4], () => client.reply)
      expect(replies[3]).toMatch(/^452 4\.5\.3 /)
      yield* client.write("RSET\r\nQUIT\r\n")
      yield* client.closed
      expect(files(server.maildir, "new")).toEqual([])
      expect(files(server.maildir, "tmp")).toEqual([])
    }))

  it.live("a client that leaves in the middle of a message leaves nothing in tmp/ or new/", () =>
    Effect.gen(function*() {
      const server = yield* start()
      const client = yield* connect(server.port)
      yield* client.reply
      yield* startMessage(client)
      yield* client.write("Subject: half\r\n\r\n" + "z".repeat(200_000))
      yield* Effect.sleep("200 millis")
      client.socket.destroy()
      yield* Effect.sleep("300 millis")
      expect(files(server.maildir, "new")).toEqual([])
      expect(files(server.maildir, "tmp")).toEqual([])
    }))

  it.live("SIGTERM in the middle of a stream of messages: every 250 is on disk, nothing half-written", () =>
    Effect.gen(function*() {
      const server = yield* start()
      let accepted = 0
      const sender = Effect.gen(function*() {
        for (let i = 0; i < 200; i++) {
          const result = yield* send(server.port, { from: "a@x.test", to: "b@x.test", text: `message ${i}\n${"x".repeat(20_000)}` })
          if (!result.ok) return
          accepted++
        }
      })
      const fiber = yield* Effect.forkChild(sender)
      yield* Effect.sleep("300 millis")
      server.child.kill("SIGTERM")
      expect(yield* exited(server.child)).toBe(0)
      yield* Fiber.await(fiber)
      expect(accepted).toBeGreaterThan(0)
      expect(files(server.maildir, "new").length).toBe(accepted)
      expect(files(server.maildir, "tmp")).toEqual([])
    }))

  it.live("invalid configuration stops start-up with one line naming the variable, exit code 1", () =>
    Effect.gen(function*() {
      for (const [variable, value] of [["SMTP_PORT", "70000"], ["SMTP_AUTH_USERS", "no-password"], ["SMTP_TLS_CERT", "/nonexistent.pem"]]) {
        const child = spawn(process.execPath, [program], { env: { ...process.env, [variable!]: value! }, stdio: ["ignore", "pipe", "pipe"] })
        let stderr = ""
        child.stderr.on("data", (chunk: Buffer) => stderr += chunk.toString())
        expect(yield* exited(child)).toBe(1)
        expect(stderr.trim().split("\n")).toHaveLength(1)
        expect(stderr).toContain(variable)
      }
    }))
})
