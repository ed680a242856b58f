/**
 * The user store and the policy plugins, through the in-memory test kit:
 * `Users` with `authUsers` (scrypt hashes, the memory and file stores, a store
 * that fails), `rateLimits` on Effect's `RateLimiter`, and `greylisting` on
 * Effect's `Persistence`. Each test asserts the exact reply the client reads
 * (code, enhanced code and text), and the warning and count of a policy store
 * that fails or does not answer. Windows and delays pass on the TestClock;
 * the tests that meet the auth failure delay run on the live clock with a
 * delay of a millisecond, and assert nothing about time.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, Layer, Logger, Metric, Option, Redacted, References } from "effect"
import * as Persistence from "effect/persistence/Persistence"
import * as RateLimiter from "effect/persistence/RateLimiter"
import { TestClock } from "effect/testing"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import {
  authUsers,
  Credentials,
  greylisting,
  PolicyMemory,
  type GreylistingOptions,
  hashPassword,
  rateLimits,
  RcptTo,
  Reject,
  type RateLimitsOptions,
  SmtpApp,
  SmtpMetrics,
  Username,
  Users,
  UsersError,
  verifyPassword
} from "../src/index.ts"
import { isHash } from "../src/services/Users.ts"
import { type Reply, SmtpTest, type SmtpTestClient } from "../src/testing/index.ts"

// ---------------------------------------------------------------------------------------------------------------------
// Helpers

/** The reply as one line: code, enhanced code and text. */
const line = (reply: Reply): string => [String(reply.code), reply.enhanced, ...reply.lines].filter((part) => part !== undefined).join(" ")

/** A log line as a logger got it. */
interface LogLine {
  readonly level: string
  readonly message: string
  readonly annotations: Readonly<Record<string, unknown>>
}

/** Captures every log line from Debug up; `named(message)` reads those with that message. */
const captureLogs = () => {
  const lines: Array<LogLine> = []
  const logger = Logger.make(({ fiber, logLevel, message }) => {
    const text = Array.isArray(message) ? String(message[0]) : String(message)
    lines.push({ level: logLevel, message: text, annotations: { ...fiber.getRef(References.CurrentLogAnnotations) } })
  })
  return {
    named: (message: string) => lines.filter((entry) => entry.message === message),
    layer: Layer.mergeAll(Logger.layer([logger]), Layer.succeed(References.MinimumLogLevel, "Debug"))
  }
}

/** A metric registry of the test's own, so that counts start at zero. */
const freshMetrics = () => Layer.succeed(Metric.MetricRegistry, new Map())

const storeFailures = (policy: SmtpMetrics.StorePolicy) =>
  Effect.map(Metric.value(SmtpMetrics.policyStoreFailures(policy)), (state) => state.count)

/** Lets forked log fibers run. */
const settle = Effect.repeat(Effect.yieldNow, { times: 20 })

/** Logs in whoever asks, with any password: a session with a user, without scrypt. */
const anyUser = SmtpApp.onAuth(Username, () => Effect.map(Credentials, (credentials) => credentials.username))

/** A temporary directory for the test's scope. */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "effect-smtp-users-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

const ALICE_PASSWORD = "alice's correct horse"
const BOB_PASSWORD = "bob's battery staple"
const aliceHash = await Effect.runPromise(hashPassword(Redacted.make(ALICE_PASSWORD)))
const bobHash = await Effect.runPromise(hashPassword(Redacted.make(BOB_PASSWORD)))

const ACCEPTED_MAIL = "250 2.1.0 Accepted"
const ACCEPTED_RCPT = "250 2.1.5 Accepted"
const AUTH_OK = "235 2.7.0 Authentication successful"
const AUTH_INVALID = "535 5.7.8 Authentication credentials invalid"
const POLICY_UNAVAILABLE = "451 4.3.0 Policy service unavailable, try again later"
const POLICY_UNAVAILABLE_AT_CONNECT = "421 4.3.0 Policy service unavailable, try again later"

// ---------------------------------------------------------------------------------------------------------------------
// Users and authUsers

/** authUsers on a server that offers AUTH without TLS and answers a failed login after a millisecond. */
const authServer = <E>(users: Layer.Layer<Users, E>) =>
  SmtpTest.layer(SmtpApp.empty.pipe(authUsers), { hostname: "mx.test", allowInsecureAuth: true, authFailureDelay: "1 millis", maxAuthFailures: 10 }).pipe(
    Layer.provide(users)
  )

/** One login on a connection of its own: the reply, as a line. */
const login = (method: "PLAIN" | "LOGIN", username: string, password: string) =>
  Effect.scoped(Effect.gen(function*() {
    const client = yield* SmtpTest.connect()
    yield* client.ehlo("client.test")
    const reply = yield* client.auth({ method, username, password })
    yield* client.quit
    return line(reply)
  }))

const usersFile = (dir: string, name: string, lines: ReadonlyArray<string>) => {
  const file = path.join(dir, name)
  fs.writeFileSync(file, lines.join("\n"))
  return file
}

/** A server of authUsers with `Users.layerFile(file)`, read now; then a login with AUTH PLAIN on a connection of its own. */
const fileServer = (file: string) =>
  Effect.map(
    SmtpTest.make(SmtpApp.empty.pipe(authUsers), { allowInsecureAuth: true, authFailureDelay: "1 millis" }).pipe(Effect.provide(Users.layerFile(file))),
    (server) => (username: string, password: string) =>
      Effect.scoped(Effect.gen(function*() {
        const client = yield* server.connect()
        yield* client.ehlo("client.test")
        return line(yield* client.auth({ method: "PLAIN", username, password }))
      }))
  )

describe("Users and authUsers", () => {
  it.effect("hashPassword makes $scrypt$N=16384$r=8$p=1$salt$key, which verifyPassword checks; each hash has its own salt", () =>
    Effect.gen(function*() {
      const match = /^\$scrypt\$N=16384\$r=8\$p=1\$([A-Za-z0-9+/]+=*)\$([A-Za-z0-9+/]+=*)$/.exec(aliceHash)
      expect(match, aliceHash).not.toBeNull()
      expect(Buffer.from(match?.[1] ?? "", "base64")).toHaveLength(16)
      expect(Buffer.from(match?.[2] ?? "", "base64")).toHaveLength(32)
      expect(yield* verifyPassword(aliceHash, Redacted.make(ALICE_PASSWORD))).toBe(true)
      expect(yield* verifyPassword(aliceHash, Redacted.make("alice's wrong horse"))).toBe(false)
      expect(yield* verifyPassword(aliceHash, Redacted.make(""))).toBe(false)
      const again = yield* hashPassword(Redacted.make(ALICE_PASSWORD))
      expect(again).not.toBe(aliceHash)
      expect(again.split("$")[5]).not.toBe(aliceHash.split("$")[5])
      expect(yield* verifyPassword(again, Redacted.make(ALICE_PASSWORD))).toBe(true)
      // A malformed hash matches nothing.
      expect(yield* verifyPassword("s3cret", Redacted.make("s3cret"))).toBe(false)
    }))

  // Fails: scrypt throws at once on parameters it refuses, and `derive` (src/services/Users.ts) only maps the errors
  // scrypt hands its callback, so the throw is a defect; isHash takes any digits, so the stores load such a hash.
  it.effect("a hash with scrypt parameters node refuses, or a short salt or key (cut off), matches nothing, and no store loads it", () =>
    Effect.gen(function*() {
      const zeros = (bytes: number) => Buffer.alloc(bytes).toString("base64")
      const refused = [
        ...["N=1000$r=8$p=1", "N=1048576$r=8$p=1"].map((parameters) => `$scrypt$${parameters}$${zeros(16)}$${zeros(32)}`),
        // Cut off: an empty or short key would match every password, or too many.
        `$scrypt$N=16384$r=8$p=1$${zeros(16)}$A`,
        `$scrypt$N=16384$r=8$p=1$${zeros(16)}$${zeros(3)}`,
        `$scrypt$N=16384$r=8$p=1$${zeros(4)}$${zeros(32)}`
      ]
      for (const hash of refused) {
        expect(isHash(hash), hash).toBe(false)
        expect(yield* verifyPassword(hash, Redacted.make("x")), hash).toBe(false)
      }
      const error = yield* Effect.flip(Layer.build(Users.layerMemory([["eve", refused[0]!]])))
      expect(error.message).toBe(`layerMemory: the password of "eve" is not a scrypt hash (effect-smtp hash-password makes one)`)
    }))

  it.effect("Users.layerMemory refuses a password that is not a hash, with UsersError", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Layer.build(Users.layerMemory([["alice", aliceHash], ["bob", "s3cret"]])))
      expect(error).toBeInstanceOf(UsersError)
      expect(error.message).toBe(`layerMemory: the password of "bob" is not a scrypt hash (effect-smtp hash-password makes one)`)
    }))

  it.live("AUTH PLAIN and LOGIN: the right password 235, a wrong one or an unknown user 535 5.7.8", () =>
    Effect.gen(function*() {
      expect(yield* login("PLAIN", "alice", ALICE_PASSWORD)).toBe(AUTH_OK)
      expect(yield* login("LOGIN", "alice", ALICE_PASSWORD)).toBe(AUTH_OK)
      expect(yield* login("LOGIN", "bob", BOB_PASSWORD)).toBe(AUTH_OK)
      expect(yield* login("PLAIN", "alice", BOB_PASSWORD)).toBe(AUTH_INVALID)
      expect(yield* login("LOGIN", "alice", "")).toBe(AUTH_INVALID)
      expect(yield* login("PLAIN", "mallory", ALICE_PASSWORD)).toBe(AUTH_INVALID)
      expect(yield* login("LOGIN", "mallory", "anything")).toBe(AUTH_INVALID)
      // After failures, the right password still logs in, as the app's user.
      const client = yield* SmtpTest.connect()
      yield* client.ehlo("client.test")
      expect(line(yield* client.auth({ method: "PLAIN", username: "alice", password: "nope" }))).toBe(AUTH_INVALID)
      expect(line(yield* client.auth({ method: "PLAIN", username: "alice", password: ALICE_PASSWORD }))).toBe(AUTH_OK)
      yield* client.quit
      expect(yield* client.user(Username)).toEqual(Option.some("alice"))
      expect((yield* client.session).username).toEqual(Option.some("alice"))
    }).pipe(Effect.provide(authServer(Users.layerMemory([["alice", aliceHash], ["bob", bobHash]])))))

  it.live("a user store that fails answers 454 4.7.0 Temporary authentication failure and logs user store failed", () => {
    const logs = captureLogs()
    const failing = Layer.succeed(Users, Users.of({ verify: () => Effect.fail(new UsersError({ message: "database down" })) }))
    return Effect.gen(function*() {
      expect(yield* login("PLAIN", "alice", ALICE_PASSWORD)).toBe("454 4.7.0 Temporary authentication failure")
      expect(yield* login("LOGIN", "alice", ALICE_PASSWORD)).toBe("454 4.7.0 Temporary authentication failure")
      yield* settle
      const logged = logs.named("user store failed")
      expect(logged).toHaveLength(2)
      expect(logged[0]).toMatchObject({ level: "Error", annotations: { error: "database down" } })
    }).pipe(Effect.provide(authServer(failing)), Effect.provide(logs.layer))
  })

  it.effect("Users.layerFile reads user:hash lines, skipping blank lines and # comments", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const file = usersFile(dir, "users", ["# the users", "", `alice:${aliceHash}`, "   ", "  # bob is next", `bob:${bobHash}\r`, ""])
      const users = yield* Users.pipe(Effect.provide(Users.layerFile(file)))
      expect(yield* users.verify("alice", Redacted.make(ALICE_PASSWORD))).toBe(true)
      expect(yield* users.verify("bob", Redacted.make(BOB_PASSWORD))).toBe(true)
      expect(yield* users.verify("alice", Redacted.make(BOB_PASSWORD))).toBe(false)
      expect(yield* users.verify("# the users", Redacted.make(ALICE_PASSWORD))).toBe(false)
      expect(yield* users.verify("carol", Redacted.make(ALICE_PASSWORD))).toBe(false)
    }))

  it.effect("Users.layerFile fails the layer on a line without user:hash, a password that is not a hash, or no file", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const noColon = usersFile(dir, "no-colon", [`alice:${aliceHash}`, "bob"])
      const noUser = usersFile(dir, "no-user", ["# nobody", `:${aliceHash}`])
      const plain = usersFile(dir, "plain", [`alice:${aliceHash}`, "bob:s3cret"])
      const missing = path.join(dir, "missing")
      const failure = (file: string) => Effect.map(Effect.flip(Layer.build(Users.layerFile(file))), (error) => error.message)
      expect(yield* failure(noColon)).toBe(`${noColon}:2: expected user:hash`)
      expect(yield* failure(noUser)).toBe(`${noUser}:2: expected user:hash`)
      expect(yield* failure(plain)).toBe(`${plain}: the password of "bob" is not a scrypt hash (effect-smtp hash-password makes one)`)
      const unreadable = yield* failure(missing)
      expect(unreadable.startsWith(`cannot read ${missing}: `)).toBe(true)
      expect(unreadable).toContain("ENOENT")
    }))

  it.live("Users.layerFile reads a changed file again at the next login: a new user logs in, a removed one no longer does", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const dir = yield* tempDir
      const file = usersFile(dir, "users", [`alice:${aliceHash}`])
      const loginTo = yield* fileServer(file)
      expect(yield* loginTo("alice", ALICE_PASSWORD)).toBe(AUTH_OK)
      expect(yield* loginTo("bob", BOB_PASSWORD)).toBe(AUTH_INVALID)
      expect(logs.named("users file reloaded")).toEqual([])
      // Another size, and another time of change.
      usersFile(dir, "users", ["# alice left", `bob:${bobHash}`])
      fs.utimesSync(file, new Date(2030, 0, 1), new Date(2030, 0, 1))
      expect(yield* loginTo("bob", BOB_PASSWORD)).toBe(AUTH_OK)
      expect(yield* loginTo("alice", ALICE_PASSWORD)).toBe(AUTH_INVALID)
      yield* settle
      const reloaded = logs.named("users file reloaded")
      expect(reloaded).toHaveLength(1)
      expect(reloaded[0]).toMatchObject({ level: "Info", annotations: { path: file, users: 1 } })
    }).pipe(Effect.provide(logs.layer))
  })

  it.live("Users.layerFile keeps the users it had when the file becomes malformed, with an error in the log", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const dir = yield* tempDir
      const file = usersFile(dir, "users", [`alice:${aliceHash}`])
      const loginTo = yield* fileServer(file)
      expect(yield* loginTo("alice", ALICE_PASSWORD)).toBe(AUTH_OK)
      usersFile(dir, "users", [`alice:${aliceHash}`, `bob:${BOB_PASSWORD}`])
      fs.utimesSync(file, new Date(2030, 0, 1), new Date(2030, 0, 1))
      expect(yield* loginTo("alice", ALICE_PASSWORD)).toBe(AUTH_OK)
      // bob's line was not taken: its password is not a hash.
      expect(yield* loginTo("bob", BOB_PASSWORD)).toBe(AUTH_INVALID)
      yield* settle
      const kept = logs.named("users file not reloaded, keeping the users read before")
      expect(kept.length).toBeGreaterThanOrEqual(1)
      expect(kept[0]).toMatchObject({
        level: "Error",
        annotations: { path: file, error: `${file}: the password of "bob" is not a scrypt hash (effect-smtp hash-password makes one)` }
      })
      expect(logs.named("users file reloaded")).toEqual([])
      // Mended, the file is read again.
      usersFile(dir, "users", [`alice:${aliceHash}`, `bob:${bobHash}`])
      fs.utimesSync(file, new Date(2031, 0, 1), new Date(2031, 0, 1))
      expect(yield* loginTo("bob", BOB_PASSWORD)).toBe(AUTH_OK)
      yield* settle
      expect(logs.named("users file reloaded")).toHaveLength(1)
      // A file that is gone keeps the users too.
      fs.rmSync(file)
      expect(yield* loginTo("bob", BOB_PASSWORD)).toBe(AUTH_OK)
      yield* settle
      expect(logs.named("users file not reloaded, keeping the users read before").at(-1)?.annotations["error"]).toMatch(/^cannot read .*ENOENT/)
    }).pipe(Effect.provide(logs.layer))
  })
})

// ---------------------------------------------------------------------------------------------------------------------
// rateLimits

const memoryLimiter = RateLimiter.layer.pipe(Layer.provide(RateLimiter.layerStoreMemory))

const storeDown = new RateLimiter.RateLimiterError({ reason: new RateLimiter.RateLimitStoreError({ message: "redis down" }) })

/** A limiter whose store fails every lookup. */
const failingLimiter = RateLimiter.layer.pipe(
  Layer.provide(Layer.mock(RateLimiter.RateLimiterStore, { fixedWindow: () => Effect.fail(storeDown), tokenBucket: () => Effect.fail(storeDown) }))
)

/** A limiter whose store never answers. */
const silentLimiter = RateLimiter.layer.pipe(
  Layer.provide(Layer.mock(RateLimiter.RateLimiterStore, { fixedWindow: () => Effect.never, tokenBucket: () => Effect.never }))
)

const rateLimited = (options: RateLimitsOptions) => SmtpApp.empty.pipe(anyUser, rateLimits(options))

const settings = { hostname: "mx.test", allowInsecureAuth: true } as const

/** Serves `rateLimits(options)` (and AUTH for anyone) with `limiter`. */
const rateLimitServer = (options: RateLimitsOptions, limiter: Layer.Layer<RateLimiter.RateLimiter> = memoryLimiter) =>
  SmtpTest.layer(rateLimited(options), settings).pipe(Layer.provide(limiter))

/** MAIL FROM `sender`, then RCPT TO one recipient: the RCPT reply, as a line. */
const firstRecipient = (client: SmtpTestClient, sender: string) =>
  Effect.gen(function*() {
    expect(line(yield* client.mailFrom(sender))).toBe(ACCEPTED_MAIL)
    return line(yield* client.rcptTo("rcpt@example.net"))
  })

/** The greeting a client at `remoteAddress` gets, as a line; the connection is closed again. */
const greeting = (remoteAddress: string) =>
  Effect.scoped(Effect.map(SmtpTest.connect({ remoteAddress }), (client) => line(client.greeting)))

/** A connection from `remoteAddress`, after EHLO and, with a user name, AUTH. */
const session = (options: { readonly remoteAddress?: string; readonly user?: string } = {}) =>
  Effect.gen(function*() {
    const client = yield* SmtpTest.connect({ remoteAddress: options.remoteAddress ?? "192.0.2.1" })
    yield* client.ehlo("client.test")
    if (options.user !== undefined) expect(line(yield* client.auth({ method: "PLAIN", username: options.user, password: "x" }))).toBe(AUTH_OK)
    return client
  })

describe("rateLimits", () => {
  it.effect("connections: clients of one /24 share a count, another /24 has its own; past the limit 421 4.7.0 with the seconds left", () =>
    Effect.gen(function*() {
      expect(yield* greeting("198.51.100.1")).toBe("220 mx.test ESMTP")
      expect(yield* greeting("198.51.100.2")).toBe("220 mx.test ESMTP")
      expect(yield* greeting("198.51.100.3")).toBe("421 4.7.0 Too many connections from your network, try again in 60 seconds")
      expect(yield* greeting("198.51.100.1")).toBe("421 4.7.0 Too many connections from your network, try again in 60 seconds")
      expect(yield* greeting("198.51.101.1")).toBe("220 mx.test ESMTP")
      yield* TestClock.adjust("15 seconds")
      expect(yield* greeting("198.51.100.200")).toBe("421 4.7.0 Too many connections from your network, try again in 45 seconds")
      yield* TestClock.adjust("44500 millis")
      expect(yield* greeting("198.51.100.4")).toBe("421 4.7.0 Too many connections from your network, try again in 1 seconds")
      // The window has passed.
      yield* TestClock.adjust("500 millis")
      expect(yield* greeting("198.51.100.4")).toBe("220 mx.test ESMTP")
      expect(yield* greeting("198.51.100.5")).toBe("220 mx.test ESMTP")
      expect(yield* greeting("198.51.100.6")).toBe("421 4.7.0 Too many connections from your network, try again in 60 seconds")
    }).pipe(Effect.provide(rateLimitServer({ connections: { limit: 2, window: "1 minute" } }))))

  it.effect("connections: an IPv6 client's network is its /64, and an IPv4-mapped address is the IPv4 client", () =>
    Effect.gen(function*() {
      expect(yield* greeting("2001:db8:0:1::1")).toBe("220 mx.test ESMTP")
      expect(yield* greeting("2001:db8:0:1:ffff:ffff:ffff:ffff")).toBe("421 4.7.0 Too many connections from your network, try again in 30 seconds")
      expect(yield* greeting("2001:db8:0:2::1")).toBe("220 mx.test ESMTP")
      expect(yield* greeting("::ffff:198.51.100.1")).toBe("220 mx.test ESMTP")
      expect(yield* greeting("198.51.100.99")).toBe("421 4.7.0 Too many connections from your network, try again in 30 seconds")
    }).pipe(Effect.provide(rateLimitServer({ connections: { limit: 1, window: "30 seconds" } }))))

  it.effect("connections behind a trusted proxy: the proxy's own connections are not counted, the clients its XCLIENT names are", () =>
    Effect.gen(function*() {
      const server = yield* SmtpTest.make(rateLimited({ connections: { limit: 2, window: "1 minute" }, proxies: ["192.0.2.10"] }), {
        ...settings,
        xclientPeers: ["192.0.2.10"]
      })
      const proxied = (client: string) =>
        Effect.scoped(Effect.gen(function*() {
          const connection = yield* server.connect({ remoteAddress: "192.0.2.10" })
          expect(line(connection.greeting)).toBe("220 mx.test ESMTP")
          yield* connection.ehlo("proxy.test")
          return line(yield* connection.command(`XCLIENT ADDR=${client}`))
        }))
      expect(yield* proxied("198.51.100.1")).toBe("220 mx.test ESMTP")
      expect(yield* proxied("198.51.100.2")).toBe("220 mx.test ESMTP")
      expect(yield* proxied("203.0.113.1")).toBe("220 mx.test ESMTP")
      expect(yield* proxied("198.51.100.3")).toBe("421 4.7.0 Too many connections from your network, try again in 60 seconds")
    }).pipe(Effect.provide(memoryLimiter)))

  it.effect("senderMessages: counted per sender address at its message's first accepted RCPT, whatever its case and client, never the null sender; 451 4.7.1 until the window passes", () =>
    Effect.gen(function*() {
      const tooMany = (seconds: number) => `451 4.7.1 Too many messages from this sender, try again in ${seconds} seconds`
      const client = yield* session()
      expect(yield* firstRecipient(client, "alice@example.com")).toBe(ACCEPTED_RCPT)
      yield* client.rset
      // A MAIL without a recipient is no message.
      expect(line(yield* client.mailFrom("alice@example.com"))).toBe(ACCEPTED_MAIL)
      yield* client.rset
      expect(yield* firstRecipient(client, "ALICE@Example.com")).toBe(ACCEPTED_RCPT)
      // Its message's second recipient is not another message.
      expect(line(yield* client.rcptTo("second@example.net"))).toBe(ACCEPTED_RCPT)
      yield* client.rset
      expect(yield* firstRecipient(client, "alice@example.com")).toBe(tooMany(3600))
      yield* client.rset
      expect(yield* firstRecipient(client, "bob@example.com")).toBe(ACCEPTED_RCPT)
      for (let i = 0; i < 4; i++) {
        yield* client.rset
        expect(yield* firstRecipient(client, "")).toBe(ACCEPTED_RCPT)
      }
      yield* client.quit
      yield* TestClock.adjust("30 minutes")
      const elsewhere = yield* session({ remoteAddress: "203.0.113.9", user: "carol" })
      expect(yield* firstRecipient(elsewhere, "alice@example.com")).toBe(tooMany(1800))
      yield* elsewhere.quit
      yield* TestClock.adjust("30 minutes")
      const later = yield* session()
      expect(yield* firstRecipient(later, "alice@example.com")).toBe(ACCEPTED_RCPT)
    }).pipe(Effect.provide(rateLimitServer({ senderMessages: { limit: 2, window: "1 hour" } }))))

  it.effect("messages are counted once the rest of the app accepts the recipient: a refused one costs nothing", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(
        rateLimits({ senderMessages: { limit: 1, window: "1 hour" } }),
        SmtpApp.onRcptTo((next) => Effect.flatMap(RcptTo, ({ address }) => address.startsWith("nobody@") ? Reject.permanent(550, "5.1.1", "No such user") : next))
      )
      const server = yield* SmtpTest.make(app, settings)
      const client = yield* server.connect()
      yield* client.ehlo("client.test")
      yield* client.mailFrom("alice@example.com")
      expect(line(yield* client.rcptTo("nobody@example.com"))).toBe("550 5.1.1 No such user")
      expect(line(yield* client.rcptTo("nobody@example.org"))).toBe("550 5.1.1 No such user")
      expect(line(yield* client.rcptTo("bob@example.com"))).toBe(ACCEPTED_RCPT)
      yield* client.rset
      expect(yield* firstRecipient(client, "alice@example.com")).toBe("451 4.7.1 Too many messages from this sender, try again in 3600 seconds")
    }).pipe(Effect.provide(memoryLimiter)))

  it.effect("userMessages: counted per logged-in user, whatever the sender; sessions without a login are not counted", () =>
    Effect.gen(function*() {
      const tooMany = "451 4.7.1 Too many messages from this user, try again in 600 seconds"
      const carol = yield* session({ user: "carol" })
      expect(yield* firstRecipient(carol, "a@example.com")).toBe(ACCEPTED_RCPT)
      yield* carol.rset
      expect(yield* firstRecipient(carol, "b@example.com")).toBe(tooMany)
      const dave = yield* session({ remoteAddress: "192.0.2.1", user: "dave" })
      expect(yield* firstRecipient(dave, "b@example.com")).toBe(ACCEPTED_RCPT)
      const anonymous = yield* session()
      for (let i = 0; i < 3; i++) {
        expect(yield* firstRecipient(anonymous, "b@example.com")).toBe(ACCEPTED_RCPT)
        yield* anonymous.rset
      }
      // carol again, on another connection: the count is the user's.
      const again = yield* session({ remoteAddress: "203.0.113.9", user: "carol" })
      expect(yield* firstRecipient(again, "c@example.com")).toBe(tooMany)
    }).pipe(Effect.provide(rateLimitServer({ userMessages: { limit: 1, window: "10 minutes" } }))))

  it.effect("userRecipients: counted per logged-in user at each RCPT, across messages; 451 4.7.1 until the window passes", () =>
    Effect.gen(function*() {
      const tooMany = (seconds: number) => `451 4.7.1 Too many recipients from this user, try again in ${seconds} seconds`
      const carol = yield* session({ user: "carol" })
      yield* carol.mailFrom("carol@example.com")
      expect(line(yield* carol.rcptTo("r1@example.com"))).toBe(ACCEPTED_RCPT)
      yield* carol.rset
      yield* carol.mailFrom("carol@example.com")
      expect(line(yield* carol.rcptTo("r2@example.com"))).toBe(ACCEPTED_RCPT)
      expect(line(yield* carol.rcptTo("r3@example.com"))).toBe(tooMany(60))
      const anonymous = yield* session()
      yield* anonymous.mailFrom("x@example.com")
      for (const to of ["r1@example.com", "r2@example.com", "r3@example.com"]) expect(line(yield* anonymous.rcptTo(to))).toBe(ACCEPTED_RCPT)
      yield* TestClock.adjust("59 seconds")
      expect(line(yield* carol.rcptTo("r3@example.com"))).toBe(tooMany(1))
      yield* TestClock.adjust("1 second")
      expect(line(yield* carol.rcptTo("r3@example.com"))).toBe(ACCEPTED_RCPT)
    }).pipe(Effect.provide(rateLimitServer({ userRecipients: { limit: 2, window: "1 minute" } }))))

  it.effect("a store that fails, onStoreFailure open (the default): the command goes through, with a warning and a count", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const client = yield* session({ user: "carol" })
      expect(line(client.greeting)).toBe("220 mx.test ESMTP")
      expect(line(yield* client.mailFrom("alice@example.com"))).toBe(ACCEPTED_MAIL)
      expect(line(yield* client.rcptTo("bob@example.com"))).toBe(ACCEPTED_RCPT)
      yield* settle
      // connect, sender, user's messages, user's recipients: four lookups, four failures.
      expect(yield* storeFailures("rate_limits")).toBe(4)
      expect(yield* storeFailures("greylisting")).toBe(0)
      const warnings = logs.named("policy store failed, command let through")
      expect(warnings).toHaveLength(4)
      for (const warning of warnings) {
        expect(warning.level).toBe("Warn")
        expect(warning.annotations["policy"]).toBe("rate_limits")
        expect(String(warning.annotations["reason"])).toContain("redis down")
      }
    }).pipe(
      Effect.provide(rateLimitServer({
        connections: { limit: 10, window: "1 minute" },
        senderMessages: { limit: 10, window: "1 minute" },
        userMessages: { limit: 10, window: "1 minute" },
        userRecipients: { limit: 10, window: "1 minute" }
      }, failingLimiter)),
      Effect.provide(Layer.mergeAll(logs.layer, freshMetrics()))
    )
  })

  it.effect("a store that fails, onStoreFailure closed: 421 4.3.0 at connect, 451 4.3.0 at RCPT, each counted", () => {
    const logs = captureLogs()
    const limit = { limit: 10, window: "1 minute" } as const
    const server = (options: RateLimitsOptions) => SmtpTest.make(rateLimited({ ...options, onStoreFailure: "closed" }), settings).pipe(Effect.provide(failingLimiter))
    return Effect.gen(function*() {
      const atConnect = yield* (yield* server({ connections: limit })).connect()
      expect(line(atConnect.greeting)).toBe(POLICY_UNAVAILABLE_AT_CONNECT)

      const senders = yield* (yield* server({ senderMessages: limit })).connect()
      yield* senders.ehlo("client.test")
      expect(yield* firstRecipient(senders, "alice@example.com")).toBe(POLICY_UNAVAILABLE)
      yield* senders.rset
      // The null sender is not looked up.
      expect(yield* firstRecipient(senders, "")).toBe(ACCEPTED_RCPT)

      const users = yield* (yield* server({ userMessages: limit })).connect()
      yield* users.ehlo("client.test")
      expect(yield* firstRecipient(users, "alice@example.com")).toBe(ACCEPTED_RCPT)
      yield* users.rset
      yield* users.auth({ method: "PLAIN", username: "carol", password: "x" })
      expect(yield* firstRecipient(users, "alice@example.com")).toBe(POLICY_UNAVAILABLE)

      const recipients = yield* (yield* server({ userRecipients: limit })).connect()
      yield* recipients.ehlo("client.test")
      yield* recipients.auth({ method: "PLAIN", username: "carol", password: "x" })
      expect(line(yield* recipients.mailFrom("alice@example.com"))).toBe(ACCEPTED_MAIL)
      expect(line(yield* recipients.rcptTo("bob@example.com"))).toBe(POLICY_UNAVAILABLE)
      yield* settle
      expect(yield* storeFailures("rate_limits")).toBe(4)
      const refused = logs.named("policy store failed, command refused")
      expect(refused).toHaveLength(4)
      expect(refused.every((warning) => warning.level === "Warn" && warning.annotations["policy"] === "rate_limits")).toBe(true)
      expect(logs.named("policy store failed, command let through")).toEqual([])
    }).pipe(Effect.provide(Layer.mergeAll(logs.layer, freshMetrics())))
  })

  it.effect("a store that does not answer within storeTimeout has failed: open lets RCPT through at the timeout, closed refuses it", () => {
    const logs = captureLogs()
    const server = (options: RateLimitsOptions) => SmtpTest.make(rateLimited(options), settings).pipe(Effect.provide(silentLimiter))
    return Effect.gen(function*() {
      const open = yield* (yield* server({ senderMessages: { limit: 10, window: "1 minute" }, storeTimeout: "500 millis" })).connect()
      yield* open.ehlo("client.test")
      yield* open.mailFrom("alice@example.com")
      const letThrough = yield* Effect.forkChild(open.rcptTo("bob@example.com"))
      yield* TestClock.adjust("499 millis")
      expect(letThrough.pollUnsafe()).toBeUndefined()
      yield* TestClock.adjust("1 millis")
      expect(line(yield* Fiber.join(letThrough))).toBe(ACCEPTED_RCPT)

      // The default timeout: 2 seconds.
      const closed = yield* (yield* server({ senderMessages: { limit: 10, window: "1 minute" }, onStoreFailure: "closed" })).connect()
      yield* closed.ehlo("client.test")
      yield* closed.mailFrom("alice@example.com")
      const refused = yield* Effect.forkChild(closed.rcptTo("bob@example.com"))
      yield* TestClock.adjust("1999 millis")
      expect(refused.pollUnsafe()).toBeUndefined()
      yield* TestClock.adjust("1 millis")
      expect(line(yield* Fiber.join(refused))).toBe(POLICY_UNAVAILABLE)
      yield* settle
      expect(yield* storeFailures("rate_limits")).toBe(2)
      const warnings = [...logs.named("policy store failed, command let through"), ...logs.named("policy store failed, command refused")]
      expect(warnings.map((warning) => warning.annotations["reason"])).toEqual([expect.stringContaining("no answer within"), expect.stringContaining("no answer within")])
    }).pipe(Effect.provide(Layer.mergeAll(logs.layer, freshMetrics())))
  })
})

// ---------------------------------------------------------------------------------------------------------------------
// greylisting

const greylistServer = (options: GreylistingOptions = {}, backing: Layer.Layer<Persistence.BackingPersistence> = Persistence.layerBackingMemory) =>
  SmtpTest.layer(SmtpApp.empty.pipe(anyUser, greylisting(options)), settings).pipe(Layer.provide(backing))

/** A recipient tried on a connection of its own, which is closed again: the reply to RCPT, as a line. */
const tryRecipient = (mail: { readonly from: string; readonly to: string; readonly remoteAddress?: string; readonly user?: string }) =>
  Effect.scoped(Effect.gen(function*() {
    const client = yield* session(mail)
    expect(line(yield* client.mailFrom(mail.from))).toBe(ACCEPTED_MAIL)
    const reply = line(yield* client.rcptTo(mail.to))
    yield* client.quit
    return reply
  }))

const greylisted = (seconds: number) => `451 4.7.1 Greylisted, try again in ${seconds} seconds`

const triplet = { from: "alice@example.com", to: "bob@example.net", remoteAddress: "198.51.100.1" } as const

const persistenceDown = new Persistence.PersistenceError({ message: "redis down" })

const backingWith = (store: Partial<Persistence.BackingPersistenceStore>) =>
  Layer.succeed(Persistence.BackingPersistence, Persistence.BackingPersistence.of({
    make: () =>
      Effect.succeed({
        get: () => Effect.fail(persistenceDown),
        getMany: () => Effect.fail(persistenceDown),
        set: () => Effect.fail(persistenceDown),
        setMany: () => Effect.fail(persistenceDown),
        remove: () => Effect.fail(persistenceDown),
        clear: Effect.fail(persistenceDown),
        ...store
      })
  }))

describe("greylisting", () => {
  it.effect("a new triplet gets 451 4.7.1 for 5 minutes, with the seconds left; then it is accepted, and passes at once from then on", () =>
    Effect.gen(function*() {
      expect(yield* tryRecipient(triplet)).toBe(greylisted(300))
      yield* TestClock.adjust("100 seconds")
      expect(yield* tryRecipient(triplet)).toBe(greylisted(200))
      yield* TestClock.adjust("199500 millis")
      expect(yield* tryRecipient(triplet)).toBe(greylisted(1))
      yield* TestClock.adjust("500 millis")
      expect(yield* tryRecipient(triplet)).toBe(ACCEPTED_RCPT)
      expect(yield* tryRecipient(triplet)).toBe(ACCEPTED_RCPT)
      // Each message renews the pass for 36 days.
      yield* TestClock.adjust("30 days")
      expect(yield* tryRecipient(triplet)).toBe(ACCEPTED_RCPT)
      yield* TestClock.adjust("30 days")
      expect(yield* tryRecipient(triplet)).toBe(ACCEPTED_RCPT)
      // 36 days without a message: the triplet is new again.
      yield* TestClock.adjust("37 days")
      expect(yield* tryRecipient(triplet)).toBe(greylisted(300))
    }).pipe(Effect.provide(greylistServer())))

  it.effect("a retry after the 24 hour retry window starts over", () =>
    Effect.gen(function*() {
      expect(yield* tryRecipient(triplet)).toBe(greylisted(300))
      yield* TestClock.adjust("24 hours")
      yield* TestClock.adjust("1 minute")
      expect(yield* tryRecipient(triplet)).toBe(greylisted(300))
      yield* TestClock.adjust("4 minutes")
      expect(yield* tryRecipient(triplet)).toBe(greylisted(60))
      yield* TestClock.adjust("1 minute")
      expect(yield* tryRecipient(triplet)).toBe(ACCEPTED_RCPT)
    }).pipe(Effect.provide(greylistServer())))

  it("a delay not shorter than the retry window throws when the plugin is made: nothing could ever pass", () => {
    expect(() => greylisting({ delay: "2 hours", retryWindow: "1 hour" })).toThrow("greylisting: delay (2h) must be shorter than retryWindow (1h)")
    expect(() => greylisting({ delay: "1 hour", retryWindow: "1 hour" })).toThrow("must be shorter than retryWindow")
  })

  it.effect("delay and retryWindow are settings", () =>
    Effect.gen(function*() {
      expect(yield* tryRecipient(triplet)).toBe(greylisted(60))
      yield* TestClock.adjust("50 seconds")
      expect(yield* tryRecipient(triplet)).toBe(greylisted(10))
      yield* TestClock.adjust("11 minutes")
      expect(yield* tryRecipient(triplet)).toBe(greylisted(60))
      yield* TestClock.adjust("1 minute")
      expect(yield* tryRecipient(triplet)).toBe(ACCEPTED_RCPT)
    }).pipe(Effect.provide(greylistServer({ delay: "1 minute", retryWindow: "10 minutes" }))))

  it.effect("the triplet is the client's network, the sender and the recipient: another of any is new, another client of the /24 shares it", () =>
    Effect.gen(function*() {
      expect(yield* tryRecipient(triplet)).toBe(greylisted(300))
      yield* TestClock.adjust("5 minutes")
      expect(yield* tryRecipient(triplet)).toBe(ACCEPTED_RCPT)
      expect(yield* tryRecipient({ ...triplet, remoteAddress: "198.51.100.254" })).toBe(ACCEPTED_RCPT)
      expect(yield* tryRecipient({ ...triplet, from: "ALICE@Example.COM", to: "Bob@Example.NET" })).toBe(ACCEPTED_RCPT)
      expect(yield* tryRecipient({ ...triplet, remoteAddress: "198.51.101.1" })).toBe(greylisted(300))
      expect(yield* tryRecipient({ ...triplet, from: "carol@example.com" })).toBe(greylisted(300))
      expect(yield* tryRecipient({ ...triplet, to: "dave@example.net" })).toBe(greylisted(300))
      expect(yield* tryRecipient({ ...triplet, from: "" })).toBe(greylisted(300))
      // IPv6: the /64.
      const v6 = { ...triplet, remoteAddress: "2001:db8:0:1::1" }
      expect(yield* tryRecipient(v6)).toBe(greylisted(300))
      yield* TestClock.adjust("5 minutes")
      expect(yield* tryRecipient({ ...v6, remoteAddress: "2001:db8:0:1:abcd::9" })).toBe(ACCEPTED_RCPT)
      expect(yield* tryRecipient({ ...v6, remoteAddress: "2001:db8:0:2::1" })).toBe(greylisted(300))
    }).pipe(Effect.provide(greylistServer())))

  it.effect("clients in passNetworks and sessions that logged in are never greylisted", () =>
    Effect.gen(function*() {
      expect(yield* tryRecipient({ ...triplet, remoteAddress: "203.0.113.9" })).toBe(ACCEPTED_RCPT)
      expect(yield* tryRecipient({ ...triplet, remoteAddress: "::ffff:203.0.113.10" })).toBe(ACCEPTED_RCPT)
      expect(yield* tryRecipient({ ...triplet, remoteAddress: "2001:db8::7" })).toBe(ACCEPTED_RCPT)
      expect(yield* tryRecipient({ ...triplet, remoteAddress: "2001:db8::8" })).toBe(greylisted(300))
      // An IPv4-mapped entry is the IPv4 network it maps.
      expect(yield* tryRecipient({ ...triplet, remoteAddress: "192.0.2.200" })).toBe(ACCEPTED_RCPT)
      expect(yield* tryRecipient({ ...triplet, remoteAddress: "192.0.2.100" })).toBe(greylisted(300))
      expect(yield* tryRecipient({ ...triplet, user: "carol" })).toBe(ACCEPTED_RCPT)
      expect(yield* tryRecipient(triplet)).toBe(greylisted(300))
    }).pipe(Effect.provide(greylistServer({ passNetworks: ["203.0.113.0/24", "2001:db8::7", "::ffff:192.0.2.128/121"] }))))

  it.effect("a store that fails: open lets the recipient through with a warning and a count, closed answers 451 4.3.0", () => {
    const logs = captureLogs()
    const server = (options: GreylistingOptions) =>
      SmtpTest.make(SmtpApp.empty.pipe(greylisting(options)), settings).pipe(Effect.provide(backingWith({})))
    return Effect.gen(function*() {
      const open = yield* (yield* server({})).connect()
      yield* open.ehlo("client.test")
      yield* open.mailFrom(triplet.from)
      expect(line(yield* open.rcptTo(triplet.to))).toBe(ACCEPTED_RCPT)
      yield* settle
      expect(yield* storeFailures("greylisting")).toBe(1)
      expect(logs.named("policy store failed, command let through").map((warning) => [warning.level, warning.annotations["policy"]])).toEqual([
        ["Warn", "greylisting"]
      ])

      const closed = yield* (yield* server({ onStoreFailure: "closed" })).connect()
      yield* closed.ehlo("client.test")
      yield* closed.mailFrom(triplet.from)
      expect(line(yield* closed.rcptTo(triplet.to))).toBe(POLICY_UNAVAILABLE)
      yield* settle
      expect(yield* storeFailures("greylisting")).toBe(2)
      expect(yield* storeFailures("rate_limits")).toBe(0)
      const refused = logs.named("policy store failed, command refused")
      expect(refused.map((warning) => [warning.level, warning.annotations["policy"]])).toEqual([["Warn", "greylisting"]])
      expect(String(refused[0]?.annotations["reason"])).toContain("redis down")
    }).pipe(Effect.provide(Layer.mergeAll(logs.layer, freshMetrics())))
  })

  it.effect("a store that does not answer within storeTimeout has failed: closed answers 451 4.3.0 at the timeout", () =>
    Effect.gen(function*() {
      const client = yield* SmtpTest.connect()
      yield* client.ehlo("client.test")
      yield* client.mailFrom(triplet.from)
      const rcpt = yield* Effect.forkChild(client.rcptTo(triplet.to))
      yield* TestClock.adjust("999 millis")
      expect(rcpt.pollUnsafe()).toBeUndefined()
      yield* TestClock.adjust("1 millis")
      expect(line(yield* Fiber.join(rcpt))).toBe(POLICY_UNAVAILABLE)
      expect(yield* storeFailures("greylisting")).toBe(1)
    }).pipe(
      Effect.provide(greylistServer({ onStoreFailure: "closed", storeTimeout: "1 second" }, backingWith({ get: () => Effect.never }))),
      Effect.provide(freshMetrics())
    ))
})

// ---------------------------------------------------------------------------------------------------------------------
// PolicyMemory

describe("PolicyMemory", () => {
  it.effect("the rate limiter's counters count as Effect's memory store's, and expired ones are removed every sweepEvery", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      yield* Effect.gen(function*() {
        const limiter = yield* RateLimiter.RateLimiter
        const consume = (key: string) => limiter.consume({ key, limit: 2, window: "1 minute", onExceeded: "fail" })
        yield* consume("a")
        yield* consume("a")
        const third = yield* Effect.flip(consume("a"))
        expect(third.reason._tag === "RateLimitExceeded" && Duration.toSeconds(third.reason.retryAfter)).toBe(60)
        for (let i = 0; i < 1000; i++) yield* consume(`sender-${i}`)
        yield* TestClock.adjust("30 seconds")
        yield* settle
        expect(logs.named("expired policy entries removed")).toEqual([])
        yield* TestClock.adjust("1 minute")
        yield* settle
        expect(logs.named("expired policy entries removed").map((line) => line.annotations)).toEqual([
          { store: "rate_limiter", removed: 1001, kept: 0 }
        ])
        // A swept key starts a count of its own again.
        expect((yield* consume("a")).remaining).toBe(1)
      }).pipe(Effect.provide(RateLimiter.layer.pipe(Layer.provide(PolicyMemory.layerRateLimiterStore({ sweepEvery: "1 minute" })), Layer.provide(logs.layer))))
    }))

  it.effect("the backing store's entries expire with their time to live and are removed every sweepEvery; entries without one stay", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      yield* Effect.scoped(Effect.gen(function*() {
        const store = yield* Persistence.BackingPersistence.use((backing) => backing.make("test"))
        for (let i = 0; i < 500; i++) yield* store.set(`triplet-${i}`, { firstSeen: i }, Duration.seconds(30))
        yield* store.set("forever", { kept: true }, undefined)
        expect(yield* store.get("triplet-7")).toEqual({ firstSeen: 7 })
        yield* TestClock.adjust("31 seconds")
        expect(yield* store.get("triplet-7")).toBeUndefined()
        yield* TestClock.adjust("30 seconds")
        yield* settle
        expect(logs.named("expired policy entries removed").map((line) => line.annotations)).toEqual([
          { store: "persistence", removed: 499, kept: 1 }
        ])
        expect(yield* store.get("forever")).toEqual({ kept: true })
      })).pipe(Effect.provide(PolicyMemory.layerBackingPersistence({ sweepEvery: "1 minute" }).pipe(Layer.provide(logs.layer))))
    }))
})
