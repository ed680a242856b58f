/**
 * The command policy as a pure function, without sockets: each rule with the
 * exact verdict it gives (Pass, Reject, Refuse, WaitTurn), the rejection from
 * the Reject catalogue, and the order in which the rules apply.
 */
import { describe, expect, it } from "@effect/vitest"
import { decide, type Facts, type Rules, type Verdict } from "../src/internal/engine/CommandPolicy.ts"
import * as Reject from "../src/phases/Reject.ts"

const rules = (overrides: Partial<Rules> = {}): Rules => ({
  maxJunkCommands: 10,
  rejectUnauthorizedPipelining: true,
  authRequired: false,
  ...overrides
})

const facts = (overrides: Partial<Facts> = {}): Facts => ({
  saslResponse: false,
  secure: false,
  helo: false,
  authenticated: false,
  mayProxy: () => false,
  inTransaction: false,
  draining: false,
  junkCommands: 0,
  waited: false,
  ahead: () => 0,
  ...overrides
})

/** A command line as the client sends it, UTF-8, without CRLF. */
const line = (text: string): Buffer => Buffer.from(text, "utf8")

const run = (text: string | Buffer, f: Partial<Facts> = {}, r: Partial<Rules> = {}): Verdict =>
  decide(rules(r), facts(f), typeof text === "string" ? line(text) : text)

/** `ahead` that counts its calls and reports `bytes`. */
const counter = (bytes = 0) => {
  const calls = { count: 0 }
  return { calls, ahead: () => (calls.count++, bytes) }
}

const pass = (verb: string, junk = false): Verdict => ({ _tag: "Pass", verb, junk })
const refused = (rejection: Reject.SmtpRejection): Verdict => ({ _tag: "Refuse", rejection })
const rejected = (rejection: Reject.SmtpRejection, junk = false, endsSasl = false): Verdict =>
  ({ _tag: "Reject", rejection, junk, endsSasl })
const waitTurn: Verdict = { _tag: "WaitTurn" }

/** The verdict, and the very rejection from the catalogue (same object, same reply line). */
const expectVerdict = (actual: Verdict, expected: Verdict): void => {
  expect(actual).toStrictEqual(expected)
  if ("rejection" in expected && "rejection" in actual) {
    expect(actual.rejection).toBe(expected.rejection)
    expect(actual.rejection.line).toBe(expected.rejection.line)
  }
}

/** The lines the client reads, spelled out: a change in the catalogue shows here. */
describe("the replies the policy sends", () => {
  it("are these lines", () => {
    expect(Reject.shuttingDown.line).toBe("421 4.3.2 Service shutting down, try again later")
    expect(Reject.unrecognized.line).toBe("500 5.5.2 Error: command not recognized")
    expect(Reject.tooMuchJunk.line).toBe("421 4.7.0 Too many commands that do not send mail")
    expect(Reject.outOfSync.line).toBe("554 5.5.0 Error: SMTP protocol synchronization, closing the connection")
    expect(Reject.bdatRefused.line).toBe("502 5.5.1 BDAT is not supported, closing the connection")
    expect(Reject.lineTooLong.line).toBe("500 5.5.2 Line too long")
    expect(Reject.badParameter.line).toBe("555 5.5.4 Unsupported or malformed parameter")
    expect(Reject.badBase64.line).toBe("501 5.5.2 Cannot decode the response: not base64")
    expect(Reject.authenticationRequired.line).toBe("530 5.7.0 Authentication required")
  })
})

describe("CommandPolicy.decide", () => {
  describe("draining", () => {
    it("refuses every line with shuttingDown, before any other rule", () => {
      const { ahead, calls } = counter(100)
      const draining = { draining: true, ahead }
      for (
        const text of [
          "EHLO client.test",
          "MAIL FROM:<a@x.test>",
          "QUIT",
          "FOO",
          "NOOP",
          "",
          "123",
          "BDAT 10 LAST",
          "NOOP " + "x".repeat(1000),
          "MAIL FROM:<a@x.test> =x"
        ]
      ) {
        expectVerdict(run(text, draining), refused(Reject.shuttingDown))
        // Junk at the limit, TLS not waited for, bytes ahead, AUTH required: still shuttingDown.
        expectVerdict(
          run(text, { ...draining, junkCommands: 10, secure: true, helo: true }, { authRequired: true }),
          refused(Reject.shuttingDown)
        )
      }
      expectVerdict(run(line("MA\u0131L FROM:<a@x.test>"), draining), refused(Reject.shuttingDown))
      expectVerdict(run("!!!!", { ...draining, saslResponse: true }), refused(Reject.shuttingDown))
      expect(calls.count).toBe(0)
    })

    it("does nothing when not draining", () => {
      expectVerdict(run("EHLO client.test", { draining: false }), pass("EHLO"))
    })
  })

  describe("verbs that are not ASCII letters", () => {
    const junkVerbs = [
      line("MA\u0131L FROM:<a@x.test>"), // smtp-server would upper-case "ı" to "I": MAIL
      line("\u017fTARTTLS"), // "ſ" upper-cases to "S": STARTTLS
      line("123"),
      line(""),
      line(" MAIL FROM:<a@x.test>"),
      line("MAIL\tFROM:<a@x.test>"),
      line("EHLO\0"),
      Buffer.from([0x45, 0x48, 0x4c, 0x4f, 0xff]) // "EHLO" and a byte that is not UTF-8
    ]

    it("are rejected as unrecognized and count as junk", () => {
      for (const text of junkVerbs) {
        expectVerdict(run(text), rejected(Reject.unrecognized, true, false))
        expectVerdict(run(text, { junkCommands: 9 }), rejected(Reject.unrecognized, true, false))
      }
    })

    it("close the connection with tooMuchJunk at the junk limit", () => {
      for (const text of junkVerbs) {
        expectVerdict(run(text, { junkCommands: 10 }), refused(Reject.tooMuchJunk))
        expectVerdict(run(text, { junkCommands: 3 }, { maxJunkCommands: 3 }), refused(Reject.tooMuchJunk))
        expectVerdict(run(text, { junkCommands: 0 }, { maxJunkCommands: 0 }), refused(Reject.tooMuchJunk))
      }
    })

    it("are checked before waiting for TLS, pipelining, BDAT or AUTH", () => {
      const { ahead, calls } = counter(10)
      expectVerdict(
        run("\u017fTARTTLS", { secure: true, helo: true, ahead }, { authRequired: true }),
        rejected(Reject.unrecognized, true, false)
      )
      expectVerdict(run("BDAT\t1", { ahead }), rejected(Reject.unrecognized, true, false))
      expect(calls.count).toBe(0)
    })

    it("are no concern in a SASL response", () => {
      for (const text of ["dGVzdA==", "=", "*", "1234", "+/+/"]) {
        expectVerdict(run(text, { saslResponse: true }), pass(""))
        expectVerdict(run(text, { saslResponse: true, junkCommands: 10 }), pass(""))
      }
    })
  })

  describe("unknown ASCII verbs and commands that do not send mail", () => {
    it("pass an unknown verb as junk, upper-cased", () => {
      expectVerdict(run("FOO"), pass("FOO", true))
      expectVerdict(run("foo bar baz"), pass("FOO", true))
      expectVerdict(run("FOO", { junkCommands: 9 }), pass("FOO", true))
    })

    it("refuse an unknown verb at the junk limit", () => {
      expectVerdict(run("FOO", { junkCommands: 10 }), refused(Reject.tooMuchJunk))
      expectVerdict(run("FOO", { junkCommands: 11 }), refused(Reject.tooMuchJunk))
      expectVerdict(run("FOO", { junkCommands: 2 }, { maxJunkCommands: 3 }), pass("FOO", true))
      expectVerdict(run("FOO", { junkCommands: 3 }, { maxJunkCommands: 3 }), refused(Reject.tooMuchJunk))
      expectVerdict(run("FOO", { junkCommands: 0 }, { maxJunkCommands: 0 }), refused(Reject.tooMuchJunk))
    })

    it("count NOOP, RSET, VRFY, EXPN and HELP as junk: they are not in COMMANDS", () => {
      for (const verb of ["NOOP", "RSET", "VRFY", "EXPN", "HELP", "noop", "Rset"]) {
        expectVerdict(run(`${verb} x`), pass(verb.toUpperCase(), true))
        expectVerdict(run(verb, { junkCommands: 10 }), refused(Reject.tooMuchJunk))
      }
    })

    it("do not count the commands that move a session forward, in any case, even at the junk limit", () => {
      const known = ["HELO", "EHLO", "LHLO", "MAIL", "RCPT", "DATA", "QUIT", "STARTTLS", "AUTH"]
      for (const verb of known) {
        for (const spelled of [verb, verb.toLowerCase(), verb[0] + verb.slice(1).toLowerCase()]) {
          expectVerdict(run(spelled), pass(verb, false))
          expectVerdict(run(spelled, { junkCommands: 10 }), pass(verb, false))
          expectVerdict(run(spelled, { junkCommands: 100 }, { maxJunkCommands: 0 }), pass(verb, false))
        }
      }
    })

    it("read the verb up to the first space", () => {
      expectVerdict(run("MAIL FROM:<a@x.test>"), pass("MAIL"))
      expectVerdict(run("MAILX FROM:<a@x.test>"), pass("MAILX", true))
      expectVerdict(run("QUIT now please"), pass("QUIT"))
    })
  })

  describe("pipelining", () => {
    const lastInGroup = ["EHLO x.test", "HELO x.test", "LHLO x.test", "DATA", "STARTTLS", "ehlo x.test", "data", "starttls"]

    it("refuses EHLO, HELO, LHLO, DATA and STARTTLS with bytes ahead: outOfSync", () => {
      for (const text of lastInGroup) {
        expectVerdict(run(text, { ahead: () => 1 }), refused(Reject.outOfSync))
        expectVerdict(run(text, { ahead: () => 5000 }), refused(Reject.outOfSync))
      }
    })

    it("passes them with nothing ahead", () => {
      for (const text of lastInGroup) {
        const { ahead, calls } = counter(0)
        const verb = text.split(" ")[0]!.toUpperCase()
        expectVerdict(run(text, { ahead }), pass(verb))
        expect(calls.count).toBe(1)
      }
    })

    it("lets bytes ahead of EHLO, HELO, LHLO and DATA through when rejectUnauthorizedPipelining is off", () => {
      for (const text of ["EHLO x.test", "HELO x.test", "LHLO x.test", "DATA"]) {
        const { ahead, calls } = counter(10)
        expectVerdict(run(text, { ahead }, { rejectUnauthorizedPipelining: false }), pass(text.split(" ")[0]!))
        expect(calls.count).toBe(0)
      }
    })

    it("refuses bytes ahead of STARTTLS whatever the setting (RFC 3207 section 4)", () => {
      expectVerdict(run("STARTTLS", { ahead: () => 1 }, { rejectUnauthorizedPipelining: false }), refused(Reject.outOfSync))
      expectVerdict(run("starttls", { ahead: () => 1 }, { rejectUnauthorizedPipelining: false }), refused(Reject.outOfSync))
      expectVerdict(run("STARTTLS", { ahead: () => 0 }, { rejectUnauthorizedPipelining: false }), pass("STARTTLS"))
    })

    it("does not even ask what is ahead of commands that may be pipelined", () => {
      for (const text of ["MAIL FROM:<a@x.test>", "RCPT TO:<b@x.test>", "QUIT", "NOOP", "RSET", "FOO", "AUTH PLAIN", "VRFY a"]) {
        const { ahead, calls } = counter(100)
        const verdict = run(text, { ahead })
        expect(verdict._tag).toBe("Pass")
        expect(calls.count).toBe(0)
      }
    })

    it("does not ask what is ahead of a SASL response", () => {
      const { ahead, calls } = counter(100)
      expectVerdict(run("dGVzdA==", { saslResponse: true, ahead }), pass(""))
      // A SASL response that reads like EHLO is no EHLO.
      expectVerdict(run("EHLO", { saslResponse: true, ahead }), pass(""))
      expectVerdict(run("dGVzdA==", { saslResponse: true, helo: true, ahead }), pass(""))
      expect(calls.count).toBe(0)
    })

    it("in a HELO session, refuses any command with bytes ahead", () => {
      for (const text of ["MAIL FROM:<a@x.test>", "RCPT TO:<b@x.test>", "QUIT", "NOOP", "RSET", "AUTH PLAIN dGVzdA==", "FOO"]) {
        expectVerdict(run(text, { helo: true, ahead: () => 1 }), refused(Reject.outOfSync))
        const { ahead, calls } = counter(0)
        const verdict = run(text, { helo: true, ahead })
        expect(verdict._tag).toBe("Pass")
        expect(calls.count).toBe(1)
      }
    })

    it("in a HELO session with rejectUnauthorizedPipelining off, refuses only STARTTLS", () => {
      const off = { rejectUnauthorizedPipelining: false }
      expectVerdict(run("MAIL FROM:<a@x.test>", { helo: true, ahead: () => 1 }, off), pass("MAIL"))
      expectVerdict(run("DATA", { helo: true, ahead: () => 1 }, off), pass("DATA"))
      expectVerdict(run("STARTTLS", { helo: true, ahead: () => 1 }, off), refused(Reject.outOfSync))
    })

    it("checks what is ahead before BDAT, line length, parameters, base64 and AUTH", () => {
      const ahead = () => 1
      expectVerdict(run("BDAT 10", { helo: true, ahead }), refused(Reject.outOfSync))
      expectVerdict(run("EHLO " + "x".repeat(600), { ahead }), refused(Reject.outOfSync))
      expectVerdict(run("MAIL FROM:<a@x.test> =x", { helo: true, ahead }), refused(Reject.outOfSync))
      expectVerdict(run("AUTH PLAIN !!!!", { helo: true, ahead }), refused(Reject.outOfSync))
      expectVerdict(run("DATA", { ahead }, { authRequired: true }), refused(Reject.outOfSync))
    })
  })

  describe("TLS", () => {
    it("makes a command that must be last wait a turn first", () => {
      for (const text of ["EHLO x.test", "HELO x.test", "LHLO x.test", "DATA", "STARTTLS", "ehlo x.test"]) {
        const { ahead, calls } = counter(100)
        expectVerdict(run(text, { secure: true, ahead }), waitTurn)
        expect(calls.count).toBe(0)
      }
    })

    it("then, once waited, applies the pipelining rule", () => {
      expectVerdict(run("EHLO x.test", { secure: true, waited: true }), pass("EHLO"))
      expectVerdict(run("DATA", { secure: true, waited: true, ahead: () => 1 }), refused(Reject.outOfSync))
    })

    it("makes every command wait in a HELO session", () => {
      expectVerdict(run("MAIL FROM:<a@x.test>", { secure: true, helo: true }), waitTurn)
      expectVerdict(run("NOOP", { secure: true, helo: true }), waitTurn)
      expectVerdict(run("MAIL FROM:<a@x.test>", { secure: true, helo: true, waited: true }), pass("MAIL"))
      expectVerdict(run("MAIL FROM:<a@x.test>", { secure: true, helo: true, waited: true, ahead: () => 1 }), refused(Reject.outOfSync))
    })

    it("does not make other commands or SASL responses wait", () => {
      for (const text of ["MAIL FROM:<a@x.test>", "RCPT TO:<b@x.test>", "QUIT", "NOOP", "AUTH PLAIN dGVzdA==", "FOO"]) {
        expect(run(text, { secure: true })._tag).toBe("Pass")
      }
      expectVerdict(run("dGVzdA==", { saslResponse: true, secure: true }), pass(""))
      expectVerdict(run("EHLO", { saslResponse: true, secure: true, helo: true }), pass(""))
    })

    it("does not wait without TLS", () => {
      expectVerdict(run("EHLO x.test", { secure: false }), pass("EHLO"))
      expectVerdict(run("MAIL FROM:<a@x.test>", { secure: false, helo: true }), pass("MAIL"))
    })

    it("waits before the BDAT and line length rules", () => {
      expectVerdict(run("BDAT 10", { secure: true, helo: true }), waitTurn)
      expectVerdict(run("EHLO " + "x".repeat(600), { secure: true }), waitTurn)
    })
  })

  describe("BDAT", () => {
    it("closes the connection with bdatRefused", () => {
      for (const text of ["BDAT 100 LAST", "bdat 0", "BDAT"]) {
        expectVerdict(run(text), refused(Reject.bdatRefused))
      }
    })

    it("is refused before the junk limit and the line length", () => {
      expectVerdict(run("BDAT 100", { junkCommands: 10 }), refused(Reject.bdatRefused))
      expectVerdict(run("BDAT " + "1".repeat(600)), refused(Reject.bdatRefused))
    })

    it("is not confused with a longer verb", () => {
      expectVerdict(run("BDATX 100"), pass("BDATX", true))
    })
  })

  describe("line length, CRLF included", () => {
    /** `prefix` padded with `x` to `length` bytes. */
    const padded = (prefix: string, length: number, pad = "x") => prefix + pad.repeat(length - prefix.length)

    it("allows 512 for ordinary commands", () => {
      for (const prefix of ["EHLO ", "HELO ", "QUIT ", "STARTTLS "]) {
        const verb = prefix.trim()
        expectVerdict(run(padded(prefix, 510)), pass(verb))
        expectVerdict(run(padded(prefix, 511)), rejected(Reject.lineTooLong))
      }
      expectVerdict(run(padded("DATA ", 511)), rejected(Reject.lineTooLong))
      expectVerdict(run(padded("NOOP ", 510)), pass("NOOP", true))
    })

    it("allows 2048 for MAIL and RCPT", () => {
      const mail = (length: number) => padded("MAIL FROM:<", length - 3) + "@x>"
      const rcpt = (length: number) => padded("rcpt to:<", length - 3) + "@x>"
      expect(mail(2046).length).toBe(2046)
      expectVerdict(run(mail(2046)), pass("MAIL"))
      expectVerdict(run(mail(2047)), rejected(Reject.lineTooLong))
      expectVerdict(run(rcpt(2046)), pass("RCPT"))
      expectVerdict(run(rcpt(2047)), rejected(Reject.lineTooLong))
      // Parameters count too.
      const withSize = (length: number) => padded("MAIL FROM:<a@x.test> SIZE=", length, "1")
      expectVerdict(run(withSize(2046)), pass("MAIL"))
      expectVerdict(run(withSize(2047)), rejected(Reject.lineTooLong))
    })

    it("allows 12288 for AUTH", () => {
      // "AUTH " + mechanism + " " + base64 of 12272 characters: the mechanism's length sets the total.
      const token = "QUJD".repeat(3068)
      const auth = (length: number) => `AUTH ${"X".repeat(length - 6 - token.length)} ${token}`
      expect(auth(12286).length).toBe(12286)
      expectVerdict(run(auth(12286)), pass("AUTH"))
      expectVerdict(run(auth(12287)), rejected(Reject.lineTooLong))
      expectVerdict(run(padded("AUTH PLAIN", 12286, " ")), pass("AUTH"))
      expectVerdict(run(padded("AUTH PLAIN", 12287, " ")), rejected(Reject.lineTooLong))
    })

    it("allows 12288 for a SASL response", () => {
      const token = "QUJD".repeat(3071) // 12284 characters; trailing spaces make up the rest
      const response = (length: number) => padded(token, length, " ")
      expectVerdict(run(response(12286), { saslResponse: true }), pass(""))
      expectVerdict(run(response(12287), { saslResponse: true }), rejected(Reject.lineTooLong, false, true))
      // Without the SASL exchange the same line is a command of 512 at most.
      expectVerdict(run("QUJD".repeat(128), { saslResponse: false }), rejected(Reject.lineTooLong, true))
    })

    it("is checked before parameters, base64, the junk limit and AUTH", () => {
      expectVerdict(run(padded("MAIL FROM:<a@x.test> =x ", 2047)), rejected(Reject.lineTooLong))
      expectVerdict(run(padded("AUTH PLAIN !", 12287)), rejected(Reject.lineTooLong))
      expectVerdict(run(padded("!", 12287), { saslResponse: true }), rejected(Reject.lineTooLong, false, true))
      expectVerdict(
        run(padded("MAIL FROM:<a@x.test> ", 2047), {}, { authRequired: true }),
        rejected(Reject.lineTooLong)
      )
    })
  })

  describe("MAIL and RCPT parameters", () => {
    it("pass when well formed", () => {
      for (
        const text of [
          "MAIL FROM:<a@x.test>",
          "MAIL FROM:<>",
          "MAIL FROM:<a@x.test> SIZE=100 BODY=8BITMIME",
          "MAIL FROM:<a@x.test>  SIZE=100\tBODY=8BITMIME  ",
          "MAIL FROM:<a@x.test> SMTPUTF8",
          "MAIL FROM:<a@x.test> RET=HDRS ENVID=QQ314159",
          "mail from:<a@x.test> size=100",
          "MAIL FROM:<a@x.test> X-VENDOR=caf\u00e9" // a UTF-8 value (RFC 6531)
        ]
      ) {
        expectVerdict(run(text), pass("MAIL"))
      }
      expectVerdict(run("RCPT TO:<b@x.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@x.test"), pass("RCPT"))
    })

    it("reject a malformed parameter with badParameter", () => {
      for (
        const parameter of [
          "=x",
          "SIZE==1",
          "SIZE=",
          "SIZE=1=2",
          "-SIZE=1",
          "SI_ZE=1",
          "SIZE=1\x01",
          "SIZE=\x7f",
          "BODY=8BIT\x00MIME",
          "SIZE=100 =x"
        ]
      ) {
        expectVerdict(run(`MAIL FROM:<a@x.test> ${parameter}`), rejected(Reject.badParameter, false, false))
        expectVerdict(run(`RCPT TO:<b@x.test> ${parameter}`), rejected(Reject.badParameter, false, false))
      }
    })

    it("leave a line without a path, and other commands, to smtp-server", () => {
      expectVerdict(run("MAIL FROM:a@x.test =x"), pass("MAIL"))
      expectVerdict(run("EHLO =x"), pass("EHLO"))
      expectVerdict(run("VRFY <a@x.test> =x"), pass("VRFY", true))
    })

    it("are not looked for in a SASL response, which must be base64", () => {
      expectVerdict(run("MAIL FROM:<a@x.test> =x", { saslResponse: true }), rejected(Reject.badBase64, true, true))
    })

    it("are checked before AUTH is required", () => {
      expectVerdict(run("MAIL FROM:<a@x.test> =x", {}, { authRequired: true }), rejected(Reject.badParameter, false, false))
    })
  })

  describe("base64", () => {
    it("passes AUTH with a valid initial response, = or *, or none", () => {
      for (
        const text of ["AUTH PLAIN dGVzdA==", "AUTH PLAIN dGVzdDE=", "AUTH PLAIN dGVzdDEy", "AUTH PLAIN =", "AUTH LOGIN *", "AUTH LOGIN", "auth plain +/+/AA=="]
      ) {
        expectVerdict(run(text), pass("AUTH"))
      }
    })

    it("rejects AUTH with an initial response that is not base64: badBase64, ending the exchange", () => {
      for (const text of ["AUTH PLAIN dGVzdA", "AUTH PLAIN !!!!", "AUTH PLAIN dGVz=A==", "AUTH PLAIN ==", "AUTH PLAIN dGVzdA===", "AUTH PLAIN d-_z"]) {
        expectVerdict(run(text), rejected(Reject.badBase64, true, true))
      }
    })

    it("passes a SASL response of valid base64, = or *, or an empty one (RFC 4954 section 4)", () => {
      for (const text of ["dGVzdA==", "dGVzdDE=", "dGVzdDEy", "=", "*", "  dGVzdA==  ", "", "BDAT", "bdat"]) {
        expectVerdict(run(text, { saslResponse: true }), pass(""))
      }
    })

    it("rejects a SASL response that is not base64: badBase64, ending the exchange", () => {
      for (const text of ["dGVzdA", "not base64!", "dGVz dA==", "**", "==", "\u00e9\u00e9\u00e9\u00e9"]) {
        expectVerdict(run(text, { saslResponse: true }), rejected(Reject.badBase64, true, true))
      }
    })
  })

  describe("junk limit", () => {
    it("counts a line too long for an unknown verb, and refuses it at the limit", () => {
      expectVerdict(run(`FOO ${"x".repeat(600)}`), rejected(Reject.lineTooLong, true))
      expectVerdict(run(`NOOP ${"x".repeat(600)}`, { junkCommands: 10 }), refused(Reject.tooMuchJunk))
      expectVerdict(run(`EHLO ${"x".repeat(600)}`, { junkCommands: 10 }), rejected(Reject.lineTooLong))
    })

    it("counts an AUTH or SASL response that is not base64, and refuses it at the limit", () => {
      expectVerdict(run("AUTH PLAIN !!!!", { junkCommands: 10 }), refused(Reject.tooMuchJunk))
      expectVerdict(run("!!!!", { saslResponse: true, junkCommands: 9 }), rejected(Reject.badBase64, true, true))
      expectVerdict(run("!!!!", { saslResponse: true, junkCommands: 10 }), refused(Reject.tooMuchJunk))
    })
  })

  describe("XCLIENT and XFORWARD", () => {
    it("count as junk, except when smtp-server would take them (a trusted proxy, before any handover)", () => {
      const xclientOnly = { mayProxy: (verb: "XCLIENT" | "XFORWARD") => verb === "XCLIENT" }
      expectVerdict(run("XCLIENT ADDR=198.51.100.7", xclientOnly), pass("XCLIENT"))
      expectVerdict(run("XFORWARD ADDR=198.51.100.7", xclientOnly), pass("XFORWARD", true))
      expectVerdict(run("XCLIENT ADDR=198.51.100.7"), pass("XCLIENT", true))
      expectVerdict(run("XCLIENT ADDR=198.51.100.7", { junkCommands: 10 }), refused(Reject.tooMuchJunk))
    })
  })

  describe("AUTH during a mail transaction", () => {
    it("is rejected with 503 5.5.1 (RFC 4954 section 4); outside one, and SASL responses within one, pass", () => {
      expectVerdict(run("AUTH PLAIN dGVzdA==", { inTransaction: true }), rejected(Reject.authInTransaction, false, false))
      expectVerdict(run("auth login", { inTransaction: true }), rejected(Reject.authInTransaction, false, false))
      expectVerdict(run("AUTH PLAIN dGVzdA==", { inTransaction: false }), pass("AUTH"))
      expectVerdict(run("MAIL FROM:<a@x.test>", { inTransaction: true }), pass("MAIL"))
      expectVerdict(run("dGVzdA==", { saslResponse: true, inTransaction: true }), pass(""))
    })
  })

  describe("authRequired", () => {
    const required = { authRequired: true }

    it("rejects MAIL, RCPT and DATA before authentication", () => {
      for (const text of ["MAIL FROM:<a@x.test>", "RCPT TO:<b@x.test>", "DATA", "mail from:<a@x.test>"]) {
        expectVerdict(run(text, {}, required), rejected(Reject.authenticationRequired, false, false))
      }
    })

    it("passes them once authenticated", () => {
      expectVerdict(run("MAIL FROM:<a@x.test>", { authenticated: true }, required), pass("MAIL"))
      expectVerdict(run("RCPT TO:<b@x.test>", { authenticated: true }, required), pass("RCPT"))
      expectVerdict(run("DATA", { authenticated: true }, required), pass("DATA"))
    })

    it("does not touch other commands or SASL responses", () => {
      for (const verb of ["AUTH", "EHLO", "HELO", "LHLO", "QUIT", "STARTTLS"]) {
        expectVerdict(run(verb, {}, required), pass(verb))
      }
      expectVerdict(run("AUTH PLAIN dGVzdA==", {}, required), pass("AUTH"))
      expectVerdict(run("NOOP", {}, required), pass("NOOP", true))
      expectVerdict(run("dGVzdA==", { saslResponse: true }, required), pass(""))
      // Valid base64 that reads like a transaction command is still a SASL response.
      for (const text of ["MAIL", "RCPT", "DATA", "data"]) {
        expectVerdict(run(text, { saslResponse: true }, required), pass(""))
      }
    })

    it("does nothing when not required", () => {
      expectVerdict(run("MAIL FROM:<a@x.test>", { authenticated: false }, { authRequired: false }), pass("MAIL"))
      expectVerdict(run("DATA", { authenticated: false }, { authRequired: false }), pass("DATA"))
    })
  })
})
