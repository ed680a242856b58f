/**
 * The README's plugin at work: its count is per connection, across transactions.
 */
import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { SmtpApp } from "effect-smtp"
import { SmtpTest } from "effect-smtp/testing"
import { recipientLimit } from "./plugin.js"

it.effect("recipientLimit(2): the third recipient of a connection gets 452 4.5.3, the next connection starts again", () =>
  Effect.gen(function*() {
    const server = yield* SmtpTest.make(SmtpApp.empty.pipe(recipientLimit(2)))
    const first = yield* server.connect()
    yield* first.ehlo("client.test")
    yield* first.mailFrom("a@x.test")
    expect(yield* first.rcptTo("b@x.test")).toMatchObject({ code: 250 })
    yield* first.rset
    yield* first.mailFrom("a@x.test")
    expect(yield* first.rcptTo("c@x.test")).toMatchObject({ code: 250 })
    expect(yield* first.rcptTo("d@x.test")).toEqual({ code: 452, enhanced: "4.5.3", lines: ["Too many recipients"] })
    const second = yield* server.connect()
    yield* second.ehlo("client.test")
    yield* second.mailFrom("a@x.test")
    expect(yield* second.rcptTo("b@x.test")).toMatchObject({ code: 250 })
  }))
