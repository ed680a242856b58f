/**
 * The main program as a user runs it: a child process on a free port with a
 * temporary Maildir, driven by nodemailer and raw sockets.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import * as net from "node:net"
import * as path from "node:path"
import { documentation } from "../src/bin/MailServer.ts"
import { startRedis } from "./redisServer.ts"
import { collector, connect, send, spansIn, startMessage } from "./support.ts"

interface Running {
  readonly port: number
  readonly maildir: string
  readonly child: ChildProcess
  readonly output: () => string
  /** What it wrote to standard output only. */
  readonly stdout: () => string
}

const program = new URL("../src/bin/effect-smtp.ts", import.meta.url).pathname

/** A Maildir path in a new temporary directory, removed with the scope. */
const tempMaildir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(path.join(tmpdir(), "effect-smtp-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
).pipe(Effect.map((dir) => path.join(dir, "mail")))

const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname

/**
 * Starts the command (by default `node src/bin/effect-smtp.ts`, as `npm start` does) with `env` and waits for its
 * listening line.
 */
const start = (env: Record<string, string> = {}, command: readonly [string, ReadonlyArray<string>] = [process.execPath, [program]]) =>
  Effect.flatMap(tempMaildir, (maildir) => Effect.acquireRelease(
    Effect.callback<Running, Error>((resume) => {
      const child = spawn(command[0], command[1], {
        env: { ...process.env, SMTP_HOST: "127.0.0.1", SMTP_PORT: "0", SMTP_HOSTNAME: "mx.test", SMTP_MAILDIR: maildir, ...env },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let output = ""
      let stdout = ""
      const collect = (chunk: Buffer) => {
        output += chunk.toString()
        const match = /listening on 127\.0\.0\.1:(\d+)/.exec(output)
        if (match !== null) resume(Effect.succeed({ port: Number(match[1]), maildir, child, output: () => output, stdout: () => stdout }))
      }
      child.stdout.on("data", (chunk: Buffer) => {
        stdout += chunk.toString()
        collect(chunk)
      })
      child.stderr.on("data", collect)
      child.once("exit", (code) => resume(Effect.fail(new Error(`exited with ${code}: ${output}`))))
    }),
    (running) => Effect.sync(() => running.child.kill("SIGKILL"))
  ))

/** Runs the command to its end: exit code and output. */
const run = (args: ReadonlyArray<string>) =>
  Effect.callback<{ readonly code: number | null; readonly stdout: string; readonly stderr: string }>((resume) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk: Buffer) => stdout += chunk.toString())
    child.stderr.on("data", (chunk: Buffer) => stderr += chunk.toString())
    child.once("close", (code) => resume(Effect.succeed({ code, stdout, stderr })))
  })

/** A port something else listens on, for the scope. */
const listening = Effect.acquireRelease(
  Effect.callback<net.Server>((resume) => {
    const server = net.createServer()
    server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
  }),
  (server) => Effect.callback<void>((resume) => void server.close(() => resume(Effect.void)))
).pipe(Effect.map((server) => {
  const address = server.address()
  return address !== null && typeof address === "object" ? address.port : 0
}))

/** Whether a connection to the port is refused: nothing listens there. */
const refused = (port: number) =>
  Effect.callback<boolean>((resume) => {
    const socket = net.connect(port, "127.0.0.1")
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed(false))
    })
    socket.once("error", () => resume(Effect.succeed(true)))
  })

/** Waits for the child to exit and returns its exit code. */
const exited = (child: ChildProcess) =>
  Effect.callback<number | null>((resume) => {
    if (child.exitCode !== null) return resume(Effect.succeed(child.exitCode))
    child.once("exit", (code) => resume(Effect.succeed(code)))
  })

const files = (maildir: string, dir: "new" | "tmp") => readdirSync(path.join(maildir, dir)).sort()
const stored = (maildir: string) => files(maildir, "new").map((name) => readFileSync(path.join(maildir, "new", name)))

/** Splits a stored file into its trace fields (up to the end of `Received:`) and the message as sent. */
const split = (file: Buffer, eol = "\n") => {
  const text = file.toString("latin1")
  let end = text.indexOf("Received: ")
  do end = text.indexOf(eol, end) + eol.length
  while (text[end] === "\t")
  return { trace: text.slice(0, end), body: file.subarray(end) }
}

/** Prometheus's text format, read strictly: every line a comment, a type, or a sample. */
const parsePrometheus = (text: string) => {
  const types = new Map<string, string>()
  const samples: Array<{ readonly name: string; readonly labels: Record<string, string>; readonly value: number }> = []
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("# HELP ")) continue
    const type = /^# TYPE (\w+) (counter|gauge|histogram|summary|untyped)$/.exec(line)
    if (type !== null) {
      types.set(type[1]!, type[2]!)
      continue
    }
    const sample = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line)
    expect(sample, line).not.toBeNull()
    const labels = Object.fromEntries([...(sample![2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((match) => [match[1]!, match[2]!]))
    samples.push({ name: sample![1]!, labels, value: Number(sample![3]) })
  }
  const value = (name: string, labels: Record<string, string> = {}) =>
    samples.find((sample) => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value))?.value
  return { types, value }
}

const raw = (lines: ReadonlyArray<string>) => Buffer.from(lines.join("\r\n") + "\r\n", "utf8")
/** The message as the mail server stores it by default: with Unix line endings. */
const unix = (message: Buffer) => Buffer.from(message.toString("latin1").replaceAll("\r\n", "\n"), "latin1")
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
      expect(body.equals(unix(message))).toBe(true)
      expect(file!.includes("\r")).toBe(false)
      expect(trace).toMatch(/^Return-Path: <a@sender\.test>\nX-Original-To: b@example\.test\nReceived: from [^ ]+ \(\[127\.0\.0\.1\]\)\n/)
      expect(trace).toMatch(/\n\tby mx\.test with ESMTP id \S+\n\tfor <b@example\.test>;\n\t\w{3}, \d\d \w{3} \d{4} [\d:]{8} \+0000\n$/)
      expect(files(server.maildir, "tmp")).toEqual([])
    }))

  it.live("SMTP_LINE_ENDINGS=crlf stores the message byte-exact as received, trace fields with CRLF", () =>
    Effect.gen(function*() {
      const server = yield* start({ SMTP_LINE_ENDINGS: "crlf" })
      const message = raw(["Subject: kept", "", "line one", "line two"])
      expect(yield* send(server.port, { envelope: { from: "a@sender.test", to: ["b@example.test"] }, raw: message })).toMatchObject({ ok: true })
      const [file] = stored(server.maildir)
      const { trace, body } = split(file!, "\r\n")
      expect(body.equals(message)).toBe(true)
      expect(trace).toMatch(/^Return-Path: <a@sender\.test>\r\nX-Original-To: b@example\.test\r\nReceived: from /)
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

  it.live("users with hashes from effect-smtp hash-password; a plain password works with a warning", () =>
    Effect.gen(function*() {
      const hash = yield* Effect.callback<string>((resume) => {
        const child = spawn(process.execPath, [program, "hash-password"], { stdio: ["pipe", "pipe", "pipe"] })
        let stdout = ""
        child.stdout.on("data", (chunk: Buffer) => stdout += chunk.toString())
        child.once("close", () => resume(Effect.succeed(stdout.trim())))
        child.stdin.end("wonder land\n")
      })
      expect(hash).toMatch(/^\$scrypt\$N=16384\$r=8\$p=1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/)
      const server = yield* start({ SMTP_AUTH_USERS: `alice:${hash},bob:builder` })
      expect(server.output()).toContain("plain passwords in SMTP_AUTH_USERS")
      expect(server.output()).toContain("users=bob")
      const mail = { from: "alice@example.test", to: "x@example.test", text: "hi" }
      expect(yield* send(server.port, mail, { ...tls, auth: { user: "alice", pass: "wonder land" } })).toMatchObject({ ok: true })
      expect(yield* send(server.port, mail, { ...tls, auth: { user: "alice", pass: hash } })).toMatchObject({ ok: false, code: 535 })
      expect(yield* send(server.port, mail, { ...tls, auth: { user: "bob", pass: "builder" } })).toMatchObject({ ok: true })
    }))

  it.live("the policies from their settings: networks, senders, mailboxes and a rate, with their exact replies", () =>
    Effect.gen(function*() {
      const server = yield* start({
        SMTP_DOMAINS: "example.test",
        SMTP_MAILBOXES: "b@example.test",
        SMTP_SENDER_DENY: "spam.test",
        SMTP_RATE_SENDER_MESSAGES: "2/1 hour",
        SMTP_ALLOW_NETWORKS: "127.0.0.0/8"
      })
      const reply = (result: { readonly ok: boolean; readonly response: string }) => result.ok ? "" : result.response
      expect(reply(yield* send(server.port, { from: "x@spam.test", to: "b@example.test", text: "x" })))
        .toBe("550 5.7.1 Sender address rejected: access denied")
      expect(reply(yield* send(server.port, { from: "s1@sender.test", to: "nobody@example.test", text: "x" })))
        .toBe("550 5.1.1 Mailbox unavailable: no such user here")
      expect(reply(yield* send(server.port, { from: "s2@sender.test", to: "c@elsewhere.test", text: "x" })))
        .toBe("550 5.7.1 Relay access denied")
      const burst = [
        yield* send(server.port, { from: "a@sender.test", to: "B@example.test", text: "1" }),
        yield* send(server.port, { from: "a@sender.test", to: "b@example.test", text: "2" }),
        yield* send(server.port, { from: "A@sender.test", to: "b@example.test", text: "3" })
      ]
      expect(burst.map((result) => result.ok)).toEqual([true, true, false])
      expect(reply(burst[2]!)).toMatch(/^451 4\.7\.1 Too many messages from this sender, try again in \d+ seconds$/)
      expect(stored(server.maildir)).toHaveLength(2)

      const denied = yield* start({ SMTP_DENY_NETWORKS: "127.0.0.0/8" })
      const client = yield* connect(denied.port)
      expect(yield* client.reply).toBe("554 5.7.1 Access denied")
    }))

  it.live("two effect-smtp processes given one SMTP_REDIS_URL share the sender limit and the greylist", () =>
    Effect.gen(function*() {
      const redis = yield* Effect.acquireRelease(Effect.promise(() => startRedis()), (redis) => Effect.promise(() => redis.stop()))
      const env = { SMTP_REDIS_URL: redis.url, SMTP_RATE_SENDER_MESSAGES: "3/1 hour", SMTP_GREYLISTING: "true", SMTP_GREYLIST_DELAY: "1 second" }
      const a = yield* start(env)
      const b = yield* start(env)
      const reply = (result: { readonly ok: boolean; readonly response: string }) => result.ok ? "250" : result.response
      const mail = { from: "s@sender.test", to: "b@example.test", text: "x" }
      expect(reply(yield* send(a.port, mail))).toBe("451 4.7.1 Greylisted, try again in 1 seconds")
      yield* Effect.sleep("1100 millis")
      // Greylisted on a (not counted: the recipient was refused), let through on b; three messages across both, and
      // the fourth is refused.
      expect(reply(yield* send(b.port, mail))).toBe("250")
      expect(reply(yield* send(a.port, mail))).toBe("250")
      expect(reply(yield* send(b.port, mail))).toBe("250")
      expect(reply(yield* send(a.port, mail))).toMatch(/^451 4\.7\.1 Too many messages from this sender, try again in \d+ seconds$/)
      expect(stored(a.maildir).length + stored(b.maildir).length).toBe(3)
    }), 30_000)

  it.live("several recipients, relay denied for other domains, UTF-8 addresses and a 10 MB attachment", () =>
    Effect.gen(function*() {
      const server = yield* start({ SMTP_DOMAINS: "example.test, other.test" })
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
      expect(texts.some((text) => /X-Original-To: a@example\.test\nX-Original-To: b@other\.test\n/.test(text))).toBe(true)
      expect(files.some((file) => split(file).body.equals(unix(utf8)))).toBe(true)
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

  it.live("invalid configuration stops start-up with one line naming the variable and the reason, exit code 1", () =>
    Effect.gen(function*() {
      const busy = yield* listening
      const cases: ReadonlyArray<readonly [Record<string, string>, string]> = [
        [{ SMTP_PORT: "70000" }, "SMTP_PORT: Expected a value between 0 and 65535"],
        [{ SMTP_HOST: "localhost" }, "SMTP_HOST: Expected an IP address"],
        [{ SMTP_HOST: "192.0.2.1" }, "SMTP_HOST: 192.0.2.1 is not an address of this machine"],
        [{ SMTP_PORT: String(busy) }, `SMTP_PORT: 127.0.0.1:${busy} is in use by another program`],
        [{ SMTP_AUTH_USERS: "alice:pass word" }, "SMTP_AUTH_USERS: Expected comma-separated user:hash pairs"],
        [{ SMTP_AUTH_USERS: "alice:x", SMTP_AUTH_USERS_FILE: fixture("localhost.crt") }, "SMTP_AUTH_USERS, SMTP_AUTH_USERS_FILE: set one of them, not both"],
        [{ SMTP_AUTH_USERS_FILE: "/nonexistent-users" }, "SMTP_AUTH_USERS_FILE: cannot read /nonexistent-users"],
        [{ SMTP_AUTH_USERS_FILE: fixture("localhost.crt") }, "SMTP_AUTH_USERS_FILE: "],
        [{ SMTP_ALLOW_NETWORKS: "10.0.0.0/8,10.0.0.300" }, "SMTP_ALLOW_NETWORKS: Expected comma-separated CIDR ranges or IP addresses"],
        [{ SMTP_GREYLIST_PASS_NETWORKS: "10.0.0.0/33" }, "SMTP_GREYLIST_PASS_NETWORKS: Expected comma-separated CIDR ranges or IP addresses"],
        [{ SMTP_RATE_CONNECTIONS: "30 per minute" }, "SMTP_RATE_CONNECTIONS: Expected a count per duration, as in 30/1 minute"],
        [{ SMTP_RATE_SENDER_MESSAGES: "0/1 hour" }, "SMTP_RATE_SENDER_MESSAGES: Expected a count per duration"],
        [{ SMTP_REQUIRE_TLS: "sometimes" }, "SMTP_REQUIRE_TLS: Expected"],
        [{ SMTP_SENDER_DENY: "a b" }, "SMTP_SENDER_DENY: Expected comma-separated addresses, domains"],
        [{ SMTP_MAILBOXES: "postmaster" }, "SMTP_MAILBOXES: Expected comma-separated addresses (user@domain)"],
        [{ SMTP_GREYLIST_DELAY: "soon" }, `SMTP_GREYLIST_DELAY: Expected a valid Duration string, got "soon"`],
        [{ SMTP_GREYLIST_DELAY: "2 days" }, `SMTP_GREYLIST_DELAY: Expected a duration shorter than 24 hours, got "2 days"`],
        [{ SMTP_REDIS_URL: "127.0.0.1:6379" }, "SMTP_REDIS_URL: Expected a redis:// or rediss:// URL"],
        [{ SMTP_REDIS_URL: "redis://127.0.0.1:1", SMTP_GREYLISTING: "true" }, "SMTP_REDIS_URL: cannot connect"],
        [{ SMTP_DOMAINS: "exa mple.com,," }, "SMTP_DOMAINS: Expected comma-separated domain names"],
        [{ SMTP_DOMAINS: "example.com," }, "SMTP_DOMAINS: Expected comma-separated domain names"],
        [{ SMTP_TLS_CERT: "/nonexistent.pem", SMTP_TLS_KEY: "/nonexistent.key" }, "SMTP_TLS_CERT: cannot read /nonexistent.pem"],
        [{ SMTP_TLS_CERT: fixture("localhost.crt") }, "SMTP_TLS_CERT and SMTP_TLS_KEY: set both"],
        [{ SMTP_TLS_CERT: fixture("localhost.crt"), SMTP_TLS_KEY: fixture("localhost.crt") }, "SMTP_TLS_CERT and SMTP_TLS_KEY: Expected a certificate and its matching key"],
        [{ SMTP_MAILDIR: "/proc/effect-smtp-test" }, "SMTP_MAILDIR: the Maildir /proc/effect-smtp-test: cannot create it"],
        [{ SMTP_IDLE_TIMEOUT: "soon" }, `SMTP_IDLE_TIMEOUT: Expected a valid Duration string, got "soon"`],
        [{ SMTP_IMPLICIT_TLS: "yes" }, "SMTP_IMPLICIT_TLS: Expected"],
        [{ SMTP_IDLE_TIMEOUT: "30" }, `SMTP_IDLE_TIMEOUT: Expected a valid Duration string, got "30"`],
        [{ SMTP_IDLE_TIMEOUT: "Infinity" }, `SMTP_IDLE_TIMEOUT: Expected a duration of at most 24 days, got "Infinity"`],
        [{ SMTP_SHUTDOWN_TIMEOUT: "30 days" }, `SMTP_SHUTDOWN_TIMEOUT: Expected a duration of at most 24 days, got "30 days"`],
        [
          { SMTP_TLS_CERT: fixture("localhost.crt"), SMTP_TLS_KEY: readFileSync(fixture("localhost.key"), "utf8") },
          "SMTP_TLS_KEY: cannot read the file it names ("
        ],
        [
          { SMTP_TLS_CERT: fixture("localhost.crt"), SMTP_TLS_KEY: readFileSync(fixture("localhost.key")).toString("base64") },
          "SMTP_TLS_KEY: cannot read the file it names ("
        ],
        [{ SMTP_AUTH_REQUIRED: "true" }, "SMTP_AUTH_REQUIRED: nobody could log in: set SMTP_AUTH_USERS"],
        [{ SMTP_LOG_FORMAT: "xml" }, "SMTP_LOG_FORMAT: Expected"],
        [{ SMTP_LOG_LEVEL: "loud" }, "SMTP_LOG_LEVEL: Expected"],
        [{ SMTP_METRICS_PORT: String(busy) }, `SMTP_METRICS_PORT: cannot serve metrics on 127.0.0.1:${busy}: EADDRINUSE`],
        [{ SMTP_METRICS_HOST: "localhost", SMTP_METRICS_PORT: "0" }, "SMTP_METRICS_HOST: Expected an IP address"]
      ]
      const maildir = yield* tempMaildir
      // A few start-ups at a time: each is a whole node process.
      yield* Effect.forEach(cases, ([env, message]) =>
        Effect.gen(function*() {
          const child = spawn(process.execPath, [program], {
            env: { ...process.env, SMTP_HOST: "127.0.0.1", SMTP_PORT: "0", SMTP_MAILDIR: maildir, ...env },
            stdio: ["ignore", "pipe", "pipe"]
          })
          let stderr = ""
          child.stderr.on("data", (chunk: Buffer) => stderr += chunk.toString())
          expect(yield* exited(child), JSON.stringify(env)).toBe(1)
          expect(stderr.trim().split("\n"), JSON.stringify(env)).toHaveLength(1)
          expect(stderr.trim()).toContain(`effect-smtp: ${message}`)
          expect(stderr, "no password in a message").not.toContain("pass word")
          expect(stderr, "no private key in a message").not.toContain("PRIVATE KEY")
          expect(stderr, "no encoded key in a message").not.toContain("LS0tLS1CRUdJTi")
        }), { concurrency: 4, discard: true })
    }), 120_000)

  it.live("--help lists every variable with its default; an unknown argument is refused", () =>
    Effect.gen(function*() {
      const help = yield* run([program, "--help"])
      expect(help.code).toBe(0)
      for (const row of documentation()) expect(help.stdout).toContain(`  ${row.variable}  (default: ${row.default})`)
      const unknown = yield* run([program, "--port=25"])
      expect(unknown.code).toBe(1)
      expect(unknown.stderr).toContain("unknown argument")
    }))

  it.live("SMTP_METRICS_PORT: Prometheus scrapes /metrics on 127.0.0.1 and reads the traffic in its text format", () =>
    Effect.gen(function*() {
      const server = yield* start({ SMTP_METRICS_PORT: "0", SMTP_DOMAINS: "example.test" })
      const url = /metrics at (http:\/\/\S+)/.exec(server.output())?.[1]
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/)
      expect(yield* send(server.port, { from: "a@x.test", to: "b@example.test", text: "one" })).toMatchObject({ ok: true })
      expect(yield* send(server.port, { from: "a@x.test", to: "b@example.test", text: "two" })).toMatchObject({ ok: true })
      expect(yield* send(server.port, { from: "a@x.test", to: "c@elsewhere.test", text: "relay" })).toMatchObject({ ok: false, code: 550 })
      const scrape = yield* Effect.promise(() => fetch(url!).then(async (response) => ({ type: response.headers.get("content-type"), body: await response.text() })))
      expect(scrape.type).toMatch(/^text\/plain; version=0\.0\.4/)
      const metrics = parsePrometheus(scrape.body)
      expect(metrics.types.get("smtp_messages_accepted_total")).toBe("counter")
      expect(metrics.types.get("smtp_connections_active")).toBe("gauge")
      expect(metrics.types.get("smtp_message_size_bytes")).toBe("histogram")
      expect(metrics.value("smtp_messages_accepted_total")).toBe(2)
      expect(metrics.value("smtp_connections_opened_total")).toBe(3)
      expect(metrics.value("smtp_rejections_total", { phase: "rcpt_to", class: "5xx", enhanced: "5.7.1" })).toBe(1)
      expect(metrics.value("smtp_message_size_bytes_count")).toBe(2)
      expect(metrics.value("smtp_received_bytes_total")).toBe(metrics.value("smtp_message_size_bytes_sum"))
      expect(metrics.value("smtp_tls_sessions_total", { mode: "starttls" })).toBe(0)
    }))

  it.live("SMTP_LOG_FORMAT=json: one object per line with stable keys; SMTP_LOG_LEVEL=warn keeps Info out", () =>
    Effect.gen(function*() {
      const json = yield* start({ SMTP_LOG_FORMAT: "json" })
      expect(yield* send(json.port, { from: "a@x.test", to: "b@example.test", text: "one" })).toMatchObject({ ok: true })
      json.child.kill("SIGTERM")
      expect(yield* exited(json.child)).toBe(0)
      const records = json.stdout().trim().split("\n").map((line) => JSON.parse(line))
      for (const record of records) expect(Object.keys(record)).toEqual(["message", "level", "timestamp", "annotations", "spans", "fiberId"])
      const accepted = records.find((record) => record.message === "message accepted")
      expect(accepted).toMatchObject({ level: "INFO", annotations: { component: "effect-smtp", sender: "a@x.test", recipients: 1, tls: "none" } })
      expect(records.map((record) => record.message)).toEqual(expect.arrayContaining(["connection opened", "connection closed", "smtp server closed"]))

      const quiet = yield* start({ SMTP_LOG_LEVEL: "warn" })
      expect(yield* send(quiet.port, { from: "a@x.test", to: "b@example.test", text: "one" })).toMatchObject({ ok: true })
      quiet.child.kill("SIGTERM")
      expect(yield* exited(quiet.child)).toBe(0)
      expect(quiet.output()).not.toContain("level=INFO")
      expect(quiet.output()).toContain("level=WARN")
    }))

  it.live("OTEL_EXPORTER_OTLP_ENDPOINT: the session's spans and the metrics reach a collector on 127.0.0.1", () =>
    Effect.gen(function*() {
      const otlp = yield* collector
      const server = yield* start({ OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_SERVICE_NAME: "mx-test" })
      expect(yield* send(server.port, { from: "a@x.test", to: "b@example.test", text: "one" })).toMatchObject({ ok: true })
      // Stopping flushes what is left to export.
      server.child.kill("SIGTERM")
      expect(yield* exited(server.child)).toBe(0)
      const names = spansIn(otlp.bodies.get("/v1/traces") ?? []).map((span) => span.name)
      expect(names).toEqual(expect.arrayContaining(["smtp.connection", "smtp.data"]))
      const exported = JSON.stringify(otlp.bodies.get("/v1/metrics") ?? [])
      expect(exported).toContain("smtp_messages_accepted_total")
      expect(exported).toContain("mx-test")
    }))

  it.live("SIGTERM or SIGINT to npm start's own process stops the server: exit 0, nothing left listening", () =>
    Effect.gen(function*() {
      for (const signal of ["SIGTERM", "SIGINT"] as const) {
        const npm = yield* start({}, ["npm", ["start", "--silent"]])
        npm.child.kill(signal)
        expect(yield* exited(npm.child)).toBe(0)
        expect(yield* refused(npm.port)).toBe(true)
      }
    }))
})
