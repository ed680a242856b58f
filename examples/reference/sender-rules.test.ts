import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { SmtpTest } from "effect-smtp/testing"
import { senders } from "./sender-rules.ts"

describe("sender rules", () => {
  it.effect("a sender at spam.example gets 550 5.7.1, in any case; others (notspam.example too) and the null sender are accepted", () =>
    Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(senders)).connect()
      yield* client.ehlo("client.example")
      const blocked = { code: 550, enhanced: "5.7.1", lines: ["Sender domain blocked"] }
      expect(yield* client.mailFrom("bulk@spam.example")).toEqual(blocked)
      expect(yield* client.mailFrom("Bulk@SPAM.Example")).toEqual(blocked)
      expect(yield* client.mailFrom("")).toEqual({ code: 250, enhanced: "2.1.0", lines: ["Accepted"] })
      yield* client.rset
      expect(yield* client.mailFrom("alice@notspam.example")).toEqual({ code: 250, enhanced: "2.1.0", lines: ["Accepted"] })
    }))
})
