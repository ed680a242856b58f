import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { SmtpTest } from "effect-smtp/testing"
import { recipients, relay } from "./recipient-rules.ts"

const accepted = { code: 250, enhanced: "2.1.5", lines: ["Accepted"] }

describe("recipient rules", () => {
  it.effect("only recipients at mycompany.com are accepted", () =>
    Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(recipients)).connect()
      yield* client.ehlo("client.example")
      yield* client.mailFrom("alice@example.com")
      expect(yield* client.rcptTo("bob@mycompany.com")).toEqual(accepted)
      expect(yield* client.rcptTo("carol@MyCompany.COM")).toEqual(accepted)
      expect(yield* client.rcptTo("dave@mycompany.com.evil.example")).toEqual({
        code: 550,
        enhanced: "5.7.1",
        lines: ["Recipient not accepted"]
      })
    }))

  it.effect("without AUTH, only local recipients; once authenticated, any", () =>
    Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(relay, { allowInsecureAuth: true })).connect()
      yield* client.ehlo("client.example")
      yield* client.mailFrom("alice@example.com")
      expect(yield* client.rcptTo("bob@mycompany.com")).toEqual(accepted)
      expect(yield* client.rcptTo("friend@elsewhere.example")).toEqual({ code: 550, enhanced: "5.7.1", lines: ["Relay access denied"] })
      yield* client.rset
      expect(yield* client.auth({ method: "PLAIN", username: "alice", password: "secret" })).toMatchObject({ code: 235 })
      yield* client.mailFrom("alice@example.com")
      expect(yield* client.rcptTo("friend@elsewhere.example")).toEqual(accepted)
    }))
})
