/**
 * The bundled policy plugins, driven through the in-memory test kit: each test
 * asserts the exact replies (code, enhanced code, text) a client gets, as the
 * plugins' module docs and `Reject` state them. Nothing here listens on a port
 * or depends on timing; the Received field's date comes from the TestClock.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Logger, References } from "effect"
import { TestClock } from "effect/testing"
import {
  accessList,
  Credentials,
  deliver,
  failureInjection,
  type FailureRule,
  localMailboxes,
  localRecipients,
  MailboxLookupError,
  Mailboxes,
  MessageStore,
  receivedHeader,
  Reject,
  requireTls,
  senderRules,
  SmtpApp,
  type SmtpServerOptions,
  type UserKey,
  Username
} from "../src/index.ts"
import { type Reply, SmtpTest, SmtpTestError } from "../src/testing/index.ts"
import { fixtureTls } from "./support.ts"

// The replies, spelled out as the client reads them.
const reply = (code: number, enhanced: string | undefined, text: string): Reply => ({ code, enhanced, lines: [text] })
const welcome = reply(220, undefined, "mx.test ESMTP")
const senderOk = reply(250, "2.1.0", "Accepted")
const recipientOk = reply(250, "2.1.5", "Accepted")
const accessDenied = reply(554, "5.7.1", "Access denied")
const tlsRequired = reply(530, "5.7.0", "Must issue a STARTTLS command first")
const senderDenied = reply(550, "5.7.1", "Sender address rejected: access denied")
const relayDenied = reply(550, "5.7.1", "Relay access denied")
const unknownMailbox = reply(550, "5.1.1", "Mailbox unavailable: no such user here")
const lookupFailed = reply(451, "4.3.0", "Cannot check the recipient now, try again later")

const settings: SmtpServerOptions = { hostname: "mx.test" }

/** An auth phase that accepts any credentials, with the user name as the user. */
const anyLogin = SmtpApp.onAuth(Username, () => Effect.map(Credentials, (credentials) => credentials.username))

/** The greeting each client address gets, one connection each. */
const greetings = <Cs, Ts, U extends UserKey>(app: SmtpApp.SmtpApp<Cs, Ts, never, U>, addresses: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const server = yield* SmtpTest.make(app, settings)
    const replies = yield* Effect.forEach(addresses, (remoteAddress) =>
      Effect.scoped(Effect.map(server.connect({ remoteAddress }), (client) => [remoteAddress, client.greeting] as const)))
    return Object.fromEntries(replies)
  })

/** The reply to MAIL FROM of each sender, on one connection (RSET after each accepted one). */
const senderReplies = <Cs, Ts, U extends UserKey>(app: SmtpApp.SmtpApp<Cs, Ts, never, U>, senders: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const client = yield* (yield* SmtpTest.make(app, settings)).connect()
    yield* client.ehlo("client.test")
    const replies: Record<string, Reply> = {}
    for (const sender of senders) {
      const answer = yield* client.mailFrom(sender)
      replies[sender] = answer
      if (answer.code === 250) yield* client.rset
    }
    return replies
  })

describe("accessList", () => {
  it.effect("refuses a client in a denied IPv4 range at connect with 554 5.7.1 and closes the connection", () =>
    Effect.gen(function*() {
      const server = yield* SmtpTest.make(SmtpApp.empty.pipe(accessList({ deny: ["203.0.113.0/24"] })), settings)
      const refused = yield* server.connect({ remoteAddress: "203.0.113.9" })
      expect(refused.greeting).toEqual(accessDenied)
      yield* refused.closed
      expect(yield* Effect.flip(refused.ehlo("client.test"))).toBeInstanceOf(SmtpTestError)
      const served = yield* server.connect({ remoteAddress: "203.0.114.9" })
      expect(served.greeting).toEqual(welcome)
      expect((yield* served.ehlo("client.test")).code).toBe(250)
    }))

  it.effect("behind a trusted proxy, judges the client XCLIENT names: 554 5.7.1 in reply to XCLIENT, and the connection closes", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(accessList({ deny: ["203.0.113.0/24"] }))
      const server = yield* SmtpTest.make(app, { ...settings, xclientPeers: ["192.0.2.10"] })
      const proxied = yield* server.connect({ remoteAddress: "192.0.2.10" })
      expect(proxied.greeting).toEqual(welcome)
      yield* proxied.ehlo("proxy.test")
      expect(yield* proxied.command("XCLIENT ADDR=203.0.113.9")).toEqual(accessDenied)
      yield* proxied.closed
      const allowed = yield* server.connect({ remoteAddress: "192.0.2.10" })
      yield* allowed.ehlo("proxy.test")
      expect(yield* allowed.command("XCLIENT ADDR=198.51.100.7")).toEqual(welcome)
    }))

  it.effect("matches IPv6 CIDR ranges and single IPv6 addresses", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(accessList({ deny: ["2001:db8::/32", "2001:db9::25"] }))
      expect(yield* greetings(app, ["2001:db8::25", "2001:db8:ffff::1", "2001:db9::25", "2001:db9::26", "2001:db7::1", "192.0.2.1"]))
        .toEqual({
          "2001:db8::25": accessDenied,
          "2001:db8:ffff::1": accessDenied,
          "2001:db9::25": accessDenied,
          "2001:db9::26": welcome,
          "2001:db7::1": welcome,
          "192.0.2.1": welcome
        })
    }))

  it.effect("lets an allowed host inside a denied range in (the more specific allow wins)", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(accessList({ deny: ["203.0.113.0/24", "2001:db8::/32"], allow: ["203.0.113.7", "2001:db8:1::/48"] }))
      expect(yield* greetings(app, ["203.0.113.7", "203.0.113.8", "2001:db8:1::9", "2001:db8:2::9"])).toEqual({
        "203.0.113.7": welcome,
        "203.0.113.8": accessDenied,
        "2001:db8:1::9": welcome,
        "2001:db8:2::9": accessDenied
      })
    }))

  it.effect("keeps a denied range inside an allowed one out (the more specific deny wins)", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(accessList({ allow: ["10.0.0.0/8", "2001:db8::/32"], deny: ["10.1.2.0/24", "2001:db8:bad::/48"] }))
      expect(yield* greetings(app, ["10.1.2.3", "10.1.3.3", "10.200.0.1", "2001:db8:bad::1", "2001:db8:beef::1"])).toEqual({
        "10.1.2.3": accessDenied,
        "10.1.3.3": welcome,
        "10.200.0.1": welcome,
        "2001:db8:bad::1": accessDenied,
        "2001:db8:beef::1": welcome
      })
    }))

  it.effect("matches an IPv4-mapped IPv6 client (::ffff:192.0.2.7) as its IPv4 address", () =>
    Effect.gen(function*() {
      const denied = SmtpApp.empty.pipe(accessList({ deny: ["192.0.2.0/24"] }))
      expect(yield* greetings(denied, ["::ffff:192.0.2.7", "::ffff:198.51.100.7"])).toEqual({
        "::ffff:192.0.2.7": accessDenied,
        "::ffff:198.51.100.7": welcome
      })
      const allowed = SmtpApp.empty.pipe(accessList({ allow: ["192.0.2.7"] }))
      expect(yield* greetings(allowed, ["::ffff:192.0.2.7", "::ffff:192.0.2.8"])).toEqual({
        "::ffff:192.0.2.7": welcome,
        "::ffff:192.0.2.8": accessDenied
      })
    }))

  it.effect("holds an IPv4-mapped client in an entry written in IPv4-mapped form, the form the client's address has", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(accessList({ deny: ["::ffff:192.0.2.7", "::ffff:198.51.100.0/120"] }))
      expect(yield* greetings(app, ["::ffff:192.0.2.7", "::ffff:198.51.100.9", "::ffff:203.0.113.9"])).toEqual({
        "::ffff:192.0.2.7": accessDenied,
        "::ffff:198.51.100.9": accessDenied,
        "::ffff:203.0.113.9": welcome
      })
    }))

  it.effect("reads IPv4-mapped entries in any spelling (hex, the whole ::ffff:0:0/96) as the IPv4 networks they map", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(accessList({ deny: ["::ffff:c000:207", "0:0:0:0:0:ffff:c633:6400/120"] }))
      expect(yield* greetings(app, ["192.0.2.7", "::ffff:192.0.2.7", "198.51.100.9", "192.0.2.8"])).toEqual({
        "192.0.2.7": accessDenied,
        "::ffff:192.0.2.7": accessDenied,
        "198.51.100.9": accessDenied,
        "192.0.2.8": welcome
      })
      const everyIpv4 = SmtpApp.empty.pipe(accessList({ deny: ["::ffff:0:0/96"] }))
      expect(yield* greetings(everyIpv4, ["203.0.113.1", "2001:db8::1"])).toEqual({ "203.0.113.1": accessDenied, "2001:db8::1": welcome })
    }))

  it.effect("matches a link-local client by its address, whatever its zone (fe80::1%eth0)", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(accessList({ deny: ["fe80::/10"] }))
      expect(yield* greetings(app, ["fe80::1%eth0", "fe80::2"])).toEqual({ "fe80::1%eth0": accessDenied, "fe80::2": accessDenied })
    }))

  it.effect("with an allow list, refuses every client no entry holds", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(accessList({ allow: ["198.51.100.0/24", "2001:db8::1"] }))
      expect(yield* greetings(app, ["198.51.100.20", "2001:db8::1", "192.0.2.1", "2001:db8::2"])).toEqual({
        "198.51.100.20": welcome,
        "2001:db8::1": welcome,
        "192.0.2.1": accessDenied,
        "2001:db8::2": accessDenied
      })
    }))

  it("throws when made with an entry that is not a network or an address, naming the entry", () => {
    expect(() => accessList({ deny: ["203.0.113.0/33"] })).toThrow(/"203\.0\.113\.0\/33"/)
    expect(() => accessList({ allow: ["192.0.2.1", "mail.example.com"] })).toThrow(/"mail\.example\.com"/)
    expect(() => accessList({ deny: ["2001:db8::/129"] })).toThrow(/"2001:db8::\/129"/)
  })
})

describe("requireTls", () => {
  it.effect("refuses MAIL FROM in clear text with 530 5.7.0 for everybody, and accepts it after STARTTLS or on implicit TLS", () =>
    Effect.gen(function*() {
      const server = yield* SmtpTest.make(SmtpApp.empty.pipe(requireTls()), { ...settings, tls: fixtureTls })
      const plain = yield* server.connect()
      yield* plain.ehlo("client.test")
      expect(yield* plain.mailFrom("alice@example.com")).toEqual(tlsRequired)
      expect(yield* plain.starttls).toMatchObject({ code: 220 })
      yield* plain.ehlo("client.test")
      expect(yield* plain.mailFrom("alice@example.com")).toEqual(senderOk)
      const secure = yield* server.connect({ secure: true })
      yield* secure.ehlo("client.test")
      expect(yield* secure.mailFrom("alice@example.com")).toEqual(senderOk)
    }))

  it.effect("with networks, requires TLS of clients in those networks only (IPv4, IPv6 and IPv4-mapped)", () =>
    Effect.gen(function*() {
      const server = yield* SmtpTest.make(
        SmtpApp.empty.pipe(requireTls({ networks: ["198.51.100.0/24", "2001:db8::/32"] })),
        { ...settings, tls: fixtureTls }
      )
      const mailFrom = (remoteAddress: string, secure: boolean) =>
        Effect.scoped(Effect.gen(function*() {
          const client = yield* server.connect({ remoteAddress, secure })
          yield* client.ehlo("client.test")
          return yield* client.mailFrom("alice@example.com")
        }))
      expect(yield* mailFrom("198.51.100.7", false)).toEqual(tlsRequired)
      expect(yield* mailFrom("::ffff:198.51.100.7", false)).toEqual(tlsRequired)
      expect(yield* mailFrom("2001:db8::7", false)).toEqual(tlsRequired)
      expect(yield* mailFrom("192.0.2.1", false)).toEqual(senderOk)
      expect(yield* mailFrom("2001:db9::7", false)).toEqual(senderOk)
      expect(yield* mailFrom("198.51.100.7", true)).toEqual(senderOk)
      expect(yield* mailFrom("2001:db8::7", true)).toEqual(senderOk)
    }))

  it.effect("with authenticated, requires TLS of logged-in sessions only", () =>
    Effect.gen(function*() {
      const server = yield* SmtpTest.make(
        SmtpApp.empty.pipe(anyLogin, requireTls({ authenticated: true })),
        { ...settings, tls: fixtureTls, allowInsecureAuth: true }
      )
      const anonymous = yield* server.connect()
      yield* anonymous.ehlo("client.test")
      expect(yield* anonymous.mailFrom("alice@example.com")).toEqual(senderOk)
      const loggedIn = yield* server.connect()
      yield* loggedIn.ehlo("client.test")
      expect(yield* loggedIn.auth({ method: "PLAIN", username: "alice", password: "secret" })).toMatchObject({ code: 235 })
      expect(yield* loggedIn.mailFrom("alice@example.com")).toEqual(tlsRequired)
      const secure = yield* server.connect({ secure: true })
      yield* secure.ehlo("client.test")
      expect(yield* secure.auth({ method: "PLAIN", username: "alice", password: "secret" })).toMatchObject({ code: 235 })
      expect(yield* secure.mailFrom("alice@example.com")).toEqual(senderOk)
    }))

  it.effect("given networks and authenticated, requires TLS when either one holds", () =>
    Effect.gen(function*() {
      const server = yield* SmtpTest.make(
        SmtpApp.empty.pipe(anyLogin, requireTls({ networks: ["198.51.100.0/24"], authenticated: true })),
        { ...settings, allowInsecureAuth: true }
      )
      const mailFrom = (remoteAddress: string, login: boolean) =>
        Effect.scoped(Effect.gen(function*() {
          const client = yield* server.connect({ remoteAddress })
          yield* client.ehlo("client.test")
          if (login) yield* client.auth({ method: "LOGIN", username: "alice", password: "secret" })
          return yield* client.mailFrom("alice@example.com")
        }))
      expect(yield* mailFrom("198.51.100.7", false)).toEqual(tlsRequired)
      expect(yield* mailFrom("192.0.2.1", true)).toEqual(tlsRequired)
      expect(yield* mailFrom("192.0.2.1", false)).toEqual(senderOk)
    }))

  it("throws when made with a network that is not one, naming it", () => {
    expect(() => requireTls({ networks: ["198.51.100.0/24", "not-a-network"] })).toThrow(/"not-a-network"/)
  })
})

describe("senderRules", () => {
  it.effect("refuses a denied address with 550 5.7.1 and accepts the others at its domain", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(senderRules({ deny: ["eve@example.com"] }))
      expect(yield* senderReplies(app, ["eve@example.com", "alice@example.com", "eve@other.test"])).toEqual({
        "eve@example.com": senderDenied,
        "alice@example.com": senderOk,
        "eve@other.test": senderOk
      })
    }))

  it.effect("matches a domain pattern (with or without @) at that domain only, not its subdomains", () =>
    Effect.gen(function*() {
      for (const pattern of ["spam.test", "@spam.test"]) {
        const app = SmtpApp.empty.pipe(senderRules({ deny: [pattern] }))
        expect(yield* senderReplies(app, ["eve@spam.test", "eve@mail.spam.test", "eve@notspam.test"])).toEqual({
          "eve@spam.test": senderDenied,
          "eve@mail.spam.test": senderOk,
          "eve@notspam.test": senderOk
        })
      }
    }))

  it.effect("matches a .domain pattern at every subdomain, not at the domain itself", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(senderRules({ deny: [".spam.test"] }))
      expect(yield* senderReplies(app, ["eve@mail.spam.test", "eve@a.b.spam.test", "eve@spam.test", "eve@notspam.test"])).toEqual({
        "eve@mail.spam.test": senderDenied,
        "eve@a.b.spam.test": senderDenied,
        "eve@spam.test": senderOk,
        "eve@notspam.test": senderOk
      })
    }))

  it.effect("compares patterns and addresses case-insensitively", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(senderRules({ deny: ["Eve@Example.COM", "SPAM.test", ".Bulk.Test"] }))
      expect(yield* senderReplies(app, ["EVE@example.com", "eve@EXAMPLE.com", "x@Spam.Test", "x@Mail.BULK.test", "alice@example.com"])).toEqual({
        "EVE@example.com": senderDenied,
        "eve@EXAMPLE.com": senderDenied,
        "x@Spam.Test": senderDenied,
        "x@Mail.BULK.test": senderDenied,
        "alice@example.com": senderOk
      })
    }))

  it.effect("lets an allowed address at a denied domain in, and refuses senders no pattern matches once allow is given", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(senderRules({ deny: ["spam.example"], allow: ["boss@spam.example"] }))
      expect(yield* senderReplies(app, ["boss@spam.example", "Boss@SPAM.example", "eve@spam.example", "alice@example.com"])).toEqual({
        "boss@spam.example": senderOk,
        "Boss@SPAM.example": senderOk,
        "eve@spam.example": senderDenied,
        "alice@example.com": senderDenied
      })
    }))

  it.effect("refuses a denied address or subdomain inside an allowed domain (the more specific deny wins)", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(senderRules({ allow: ["partner.test", ".partner.test"], deny: ["intern@partner.test", "legacy.partner.test"] }))
      expect(yield* senderReplies(app, ["ceo@partner.test", "intern@partner.test", "x@legacy.partner.test", "x@new.partner.test"])).toEqual({
        "ceo@partner.test": senderOk,
        "intern@partner.test": senderDenied,
        "x@legacy.partner.test": senderDenied,
        "x@new.partner.test": senderOk
      })
    }))

  it.effect("accepts the null sender by default, even when an allow list refuses every other unlisted sender", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(senderRules({ allow: ["example.com"], deny: ["eve@example.com"] }))
      expect(yield* senderReplies(app, ["", "alice@example.com", "someone@other.test"])).toEqual({
        "": senderOk,
        "alice@example.com": senderOk,
        "someone@other.test": senderDenied
      })
    }))

  it.effect("refuses the null sender with 550 5.7.1 when nullSender is reject", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(senderRules({ nullSender: "reject" }))
      expect(yield* senderReplies(app, ["", "alice@example.com"])).toEqual({ "": senderDenied, "alice@example.com": senderOk })
    }))
})

describe("localRecipients", () => {
  /** The reply to RCPT TO of each recipient, in one transaction, optionally after logging in. */
  const recipientReplies = <Cs, Ts, R, U extends UserKey>(
    app: SmtpApp.SmtpApp<Cs, Ts, R, U>,
    recipients: ReadonlyArray<string>,
    login = false
  ) =>
    Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(app, { ...settings, allowInsecureAuth: true })).connect()
      yield* client.ehlo("client.test")
      if (login) expect(yield* client.auth({ method: "PLAIN", username: "alice", password: "secret" })).toMatchObject({ code: 235 })
      expect(yield* client.mailFrom("alice@example.com")).toEqual(senderOk)
      const replies: Record<string, Reply> = {}
      for (const recipient of recipients) replies[recipient] = yield* client.rcptTo(recipient)
      return replies
    })

  it.effect("accepts recipients at the local domains (any case) and refuses relaying with 550 5.7.1", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(localRecipients({ domains: ["example.com", "Example.NET"] }))
      expect(yield* recipientReplies(app, ["bob@example.com", "bob@EXAMPLE.com", "carol@example.net", "bob@elsewhere.test", "bob@sub.example.com"]))
        .toEqual({
          "bob@example.com": recipientOk,
          "bob@EXAMPLE.com": recipientOk,
          "carol@example.net": recipientOk,
          "bob@elsewhere.test": relayDenied,
          "bob@sub.example.com": relayDenied
        })
    }))

  it.effect("lets authenticated sessions relay by default", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(anyLogin, localRecipients({ domains: ["example.com"] }))
      expect(yield* recipientReplies(app, ["bob@example.com", "bob@elsewhere.test"], true)).toEqual({
        "bob@example.com": recipientOk,
        "bob@elsewhere.test": recipientOk
      })
    }))

  it.effect("refuses authenticated sessions too with relay: never", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(anyLogin, localRecipients({ domains: ["example.com"], relay: "never" }))
      expect(yield* recipientReplies(app, ["bob@example.com", "bob@elsewhere.test"], true)).toEqual({
        "bob@example.com": recipientOk,
        "bob@elsewhere.test": relayDenied
      })
    }))

  it.effect("accepts every recipient with an empty domain list", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(localRecipients({ domains: [] }))
      expect(yield* recipientReplies(app, ["bob@example.com", "bob@elsewhere.test"])).toEqual({
        "bob@example.com": recipientOk,
        "bob@elsewhere.test": recipientOk
      })
    }))

  it.effect("localMailboxes refuses an unknown local mailbox with 550 5.1.1, and relaying before any lookup", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(localMailboxes({ domains: ["example.com"] }))
      const replies = yield* recipientReplies(app, ["bob@example.com", "BOB@Example.com", "nobody@example.com", "bob@elsewhere.test"]).pipe(
        Effect.provide(Mailboxes.layerList(["Bob@example.com"]))
      )
      expect(replies).toEqual({
        "bob@example.com": recipientOk,
        "BOB@Example.com": recipientOk,
        "nobody@example.com": unknownMailbox,
        "bob@elsewhere.test": relayDenied
      })
    }))

  it.effect("localMailboxes with no domains looks every recipient up", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(localMailboxes({ domains: [] }))
      const replies = yield* recipientReplies(app, ["bob@example.com", "carol@elsewhere.test", "dave@elsewhere.test"]).pipe(
        Effect.provide(Mailboxes.layerList(["bob@example.com", "carol@elsewhere.test"]))
      )
      expect(replies).toEqual({
        "bob@example.com": recipientOk,
        "carol@elsewhere.test": recipientOk,
        "dave@elsewhere.test": unknownMailbox
      })
    }))

  it.effect("localMailboxes answers a failed lookup with 451 4.3.0 and logs the warning \"mailbox lookup failed\"", () => {
    const logged: Array<{ readonly level: string; readonly message: unknown; readonly annotations: Readonly<Record<string, unknown>> }> = []
    const capture = Logger.make<unknown, void>((entry) =>
      void logged.push({
        level: entry.logLevel,
        message: entry.message,
        annotations: entry.fiber.getRef(References.CurrentLogAnnotations)
      })
    )
    const failing = Layer.succeed(Mailboxes, Mailboxes.of({ exists: () => Effect.fail(new MailboxLookupError({ message: "directory down" })) }))
    return Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(localMailboxes({ domains: ["example.com"] }))
      const replies = yield* recipientReplies(app, ["bob@example.com", "bob@elsewhere.test"]).pipe(Effect.provide(failing))
      expect(replies).toEqual({ "bob@example.com": lookupFailed, "bob@elsewhere.test": relayDenied })
      const warnings = logged.filter((line) => line.level === "Warn")
      expect(warnings).toEqual([
        {
          level: "Warn",
          message: ["mailbox lookup failed"],
          annotations: expect.objectContaining({ recipient: "bob@example.com", error: "directory down" })
        }
      ])
    }).pipe(Effect.provide(Logger.layer([capture])))
  })
})

describe("failureInjection", () => {
  const injected = Reject.temporary(451, "4.3.0", "Injected failure")

  it.effect("always answers its reply in its phase, instead of the command", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(failureInjection([{ phase: "mailFrom", reply: injected }]))
      const client = yield* (yield* SmtpTest.make(app, settings)).connect()
      yield* client.ehlo("client.test")
      expect(yield* client.mailFrom("alice@example.com")).toEqual(reply(451, "4.3.0", "Injected failure"))
      expect(yield* client.mailFrom("bob@example.com")).toEqual(reply(451, "4.3.0", "Injected failure"))
      expect(yield* client.rcptTo("bob@example.com")).toMatchObject({ code: 503 })
    }))

  it.effect("a 421 at connect is the greeting, and the connection closes", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(failureInjection([{ phase: "connect", reply: Reject.closing("4.3.2", "Injected shutdown"), when: "always" }]))
      const client = yield* (yield* SmtpTest.make(app, settings)).connect()
      expect(client.greeting).toEqual(reply(421, "4.3.2", "Injected shutdown"))
      yield* client.closed
      expect(yield* Effect.flip(client.ehlo("client.test"))).toBeInstanceOf(SmtpTestError)
    }))

  /** The codes of 200 RCPT TO commands in one transaction, with a percent rule at RCPT. */
  const twoHundredRecipients = (when: { readonly percent: number; readonly seed?: string }) =>
    Effect.gen(function*() {
      const rules: ReadonlyArray<FailureRule> = [{ phase: "rcptTo", reply: injected, when }]
      const server = yield* SmtpTest.make(SmtpApp.empty.pipe(failureInjection(rules)), { ...settings, maxRecipients: 1000 })
      return yield* Effect.scoped(Effect.gen(function*() {
        const client = yield* server.connect()
        yield* client.ehlo("client.test")
        yield* client.mailFrom("alice@example.com")
        const replies = yield* client.pipeline(Array.from({ length: 200 }, (_, i) => `RCPT TO:<user${i}@example.com>`))
        return replies.map((answer) => answer.code)
      }))
    })

  it.effect("with a seeded percent, fails the same commands on every run, about that share of them", () =>
    Effect.gen(function*() {
      const first = yield* twoHundredRecipients({ percent: 25, seed: "plugins" })
      const second = yield* twoHundredRecipients({ percent: 25, seed: "plugins" })
      expect(second).toEqual(first)
      expect(new Set(first)).toEqual(new Set([250, 451]))
      const failed = first.filter((code) => code === 451).length
      expect(failed).toBeGreaterThanOrEqual(30)
      expect(failed).toBeLessThanOrEqual(70)
      expect(yield* twoHundredRecipients({ percent: 25, seed: "another seed" })).not.toEqual(first)
    }))

  it.effect("with 0 percent never fires, with 100 percent always does", () =>
    Effect.gen(function*() {
      expect(new Set(yield* twoHundredRecipients({ percent: 0, seed: "s" }))).toEqual(new Set([250]))
      expect(new Set(yield* twoHundredRecipients({ percent: 100 }))).toEqual(new Set([451]))
    }))

  it.effect("with a recipient pattern, fails RCPT TO and DATA for matching recipients only", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(failureInjection([
        { phase: "rcptTo", reply: Reject.temporary(452, "4.2.2", "Mailbox full"), when: { recipient: /^full-/ } },
        { phase: "data", reply: Reject.permanent(554, "5.6.0", "Injected content rejection"), when: { recipient: /@reject\.test$/ } }
      ]))
      const client = yield* (yield* SmtpTest.make(app, settings)).connect()
      yield* client.ehlo("client.test")
      yield* client.mailFrom("alice@example.com")
      expect(yield* client.rcptTo("full-bob@example.com")).toEqual(reply(452, "4.2.2", "Mailbox full"))
      expect(yield* client.rcptTo("bob-full@example.com")).toEqual(recipientOk)
      expect(yield* client.data("Subject: one\n\nbody\n")).toMatchObject({ code: 250 })
      expect(yield* client.send({ from: "alice@example.com", to: ["bob@example.com", "carol@reject.test"], message: "Subject: two\n\nbody\n" }))
        .toEqual(reply(554, "5.6.0", "Injected content rejection"))
    }))
})

describe("receivedHeader", () => {
  const app = SmtpApp.empty.pipe(receivedHeader({ hostname: "mx.example.net" }), deliver)
  const message = "Subject: hello\n\nbody\n"
  const stored = Effect.map(SmtpTest.messages, (messages) => messages.map((m) => Buffer.from(m.bytes).toString("latin1")))

  it.effect("prepends the folded Received field: HELO name, address literal, hostname, ESMTP, session id, the one recipient, the clock's date", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(Date.UTC(2026, 10, 21, 18, 0, 0))
      const server = yield* SmtpTest.make(app, settings)
      const first = yield* server.connect({ remoteAddress: "198.51.100.4" })
      yield* first.ehlo("client.example")
      expect(yield* first.send({ from: "alice@example.com", to: "Bob@Example.COM", message })).toMatchObject({ code: 250, enhanced: "2.0.0" })
      yield* first.quit
      expect((yield* first.session).id).toBe("test1")
      yield* TestClock.adjust("90 minutes")
      const second = yield* server.connect({ remoteAddress: "198.51.100.4" })
      yield* second.ehlo("client.example")
      expect(yield* second.send({ from: "alice@example.com", to: "carol@example.com", message })).toMatchObject({ code: 250 })
      yield* second.quit
      expect((yield* second.session).id).toBe("test2")
      expect(yield* stored).toEqual([
        "Received: from client.example ([198.51.100.4])\r\n" +
        "\tby mx.example.net with ESMTP id test1\r\n" +
        "\tfor <Bob@example.com>;\r\n" +
        "\tSat, 21 Nov 2026 18:00:00 +0000\r\n" +
        "Subject: hello\r\n\r\nbody\r\n",
        "Received: from client.example ([198.51.100.4])\r\n" +
        "\tby mx.example.net with ESMTP id test2\r\n" +
        "\tfor <carol@example.com>;\r\n" +
        "\tSat, 21 Nov 2026 19:30:00 +0000\r\n" +
        "Subject: hello\r\n\r\nbody\r\n"
      ])
    }).pipe(Effect.provide(Layer.fresh(MessageStore.layerMemory))))

  it.effect("a HELO name that is neither a domain nor an address literal goes in the comment, escaped; from is the client's address", () =>
    Effect.gen(function*() {
      const server = yield* SmtpTest.make(app, settings)
      for (const helo of ["a;b", "x)(by", "[192.0.2.9]", "host.example."]) {
        const client = yield* server.connect({ remoteAddress: "198.51.100.4" })
        yield* client.ehlo(helo)
        expect(yield* client.send({ from: "alice@example.com", to: "bob@example.com", message })).toMatchObject({ code: 250 })
        yield* client.quit
      }
      expect((yield* stored).map((text) => text.split("\r\n")[0])).toEqual([
        "Received: from [198.51.100.4] ([198.51.100.4] helo=a;b)",
        "Received: from [198.51.100.4] ([198.51.100.4] helo=x??by)",
        "Received: from [192.0.2.9] ([198.51.100.4])",
        "Received: from host.example. ([198.51.100.4])"
      ])
    }).pipe(Effect.provide(Layer.fresh(MessageStore.layerMemory))))

  it.effect("leaves out for with several recipients, writes an IPv6 literal, and names the protocol (SMTP after HELO)", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(Date.UTC(2027, 0, 2, 3, 4, 5))
      const client = yield* (yield* SmtpTest.make(app, settings)).connect({ remoteAddress: "2001:db8::25" })
      yield* client.helo("old.client.example")
      expect(yield* client.send({ from: "alice@example.com", to: ["bob@example.com", "carol@example.com"], message })).toMatchObject({ code: 250 })
      yield* client.quit
      expect((yield* client.session).id).toBe("test1")
      expect(yield* stored).toEqual([
        "Received: from old.client.example ([IPv6:2001:db8::25])\r\n" +
        "\tby mx.example.net with SMTP id test1;\r\n" +
        "\tSat, 02 Jan 2027 03:04:05 +0000\r\n" +
        "Subject: hello\r\n\r\nbody\r\n"
      ])
    }).pipe(Effect.provide(Layer.fresh(MessageStore.layerMemory))))

  it.effect("names ESMTPSA for an authenticated session over TLS", () =>
    Effect.gen(function*() {
      const server = yield* SmtpTest.make(app.pipe(anyLogin), { ...settings, tls: fixtureTls })
      const client = yield* server.connect({ secure: true })
      yield* client.ehlo("client.example")
      expect(yield* client.auth({ method: "PLAIN", username: "alice", password: "secret" })).toMatchObject({ code: 235 })
      expect(yield* client.send({ from: "alice@example.com", to: "bob@example.com", message })).toMatchObject({ code: 250 })
      const [field] = yield* stored
      expect(field?.split("\r\n").slice(0, 2)).toEqual([
        "Received: from client.example ([192.0.2.1])",
        "\tby mx.example.net with ESMTPSA id test1"
      ])
    }).pipe(Effect.provide(Layer.fresh(MessageStore.layerMemory))))
})
