import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { MailFrom, Message, Reject, SmtpApp } from "../src/index.ts"
import { Stream } from "effect"
import { send, serve } from "./support.ts"

describe("smoke", () => {
  it.live("accepts and rejects", () =>
    Effect.gen(function*() {
      const received: Array<string> = []
      const app = SmtpApp.empty.pipe(
        SmtpApp.onMailFrom((next) =>
          Effect.gen(function*() {
            const from = yield* MailFrom
            if (from.mailbox._tag === "Some" && from.mailbox.value.domain === "spam.test") {
              return yield* Reject.permanent(550, "5.7.1", "Sender rejected")
            }
            return yield* next
          })
        ),
        SmtpApp.onData(() =>
          Effect.gen(function*() {
            const message = yield* Message
            const bytes = yield* Stream.mkUint8Array(message.stream)
            received.push(Buffer.from(bytes).toString())
          })
        )
      )
      const server = yield* serve(app)
      const ok = yield* send(server.address.port, { from: "a@ok.test", to: "b@x.test", text: "hello" })
      expect(ok).toMatchObject({ ok: true })
      const bad = yield* send(server.address.port, { from: "a@spam.test", to: "b@x.test", text: "hello" })
      expect(bad).toMatchObject({ ok: false, code: 550 })
      expect(received.length).toBe(1)
      console.log(ok, bad)
    }))
})
