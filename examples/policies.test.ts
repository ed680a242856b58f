/**
 * The README's policies (`examples/policies.ts`) at work, in memory: each
 * plugin's reply in the order the app runs them, and a message that passes
 * them all stored with its `Received:` field.
 */
import { afterAll, expect, layer } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { hashPassword, MessageStore } from "effect-smtp"
import { SmtpTest } from "effect-smtp/testing"
import { app, flakyApp, policyStores } from "./policies.js"

const dir = mkdtempSync(path.join(tmpdir(), "policies-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const usersFile = path.join(dir, "users")
writeFileSync(usersFile, `alice:${await Effect.runPromise(hashPassword(Redacted.make("wonderland")))}\n`)

const TestServer = SmtpTest.layer(app, { hostname: "mx.example.com" }).pipe(
  Layer.provide(policyStores(usersFile)),
  Layer.provideMerge(MessageStore.layerMemory)
)

layer(TestServer)("the README's policies", (it) => {
  it.effect("refuse a denied network, a denied sender, an unknown mailbox, and greylist a new sender", () =>
    Effect.gen(function*() {
      const denied = yield* SmtpTest.connect({ remoteAddress: "203.0.113.9" })
      expect(denied.greeting).toMatchObject({ code: 554, enhanced: "5.7.1", lines: ["Access denied"] })

      const client = yield* SmtpTest.connect({ remoteAddress: "198.51.100.7" })
      yield* client.ehlo("client.example")
      expect(yield* client.mailFrom("x@spam.example")).toMatchObject({ code: 550, enhanced: "5.7.1" })
      yield* client.mailFrom("bob@sender.example")
      expect(yield* client.rcptTo("nobody@example.com")).toMatchObject({ code: 550, enhanced: "5.1.1" })
      expect(yield* client.rcptTo("alice@example.com")).toMatchObject({
        code: 451,
        enhanced: "4.7.1",
        lines: ["Greylisted, try again in 300 seconds"]
      })
    }))

  it.effect("let a known network's message through, stored with its Received field", () =>
    Effect.gen(function*() {
      const client = yield* SmtpTest.connect({ remoteAddress: "10.1.2.3" })
      yield* client.ehlo("client.example")
      yield* client.mailFrom("bob@sender.example")
      expect(yield* client.rcptTo("alice@example.com")).toMatchObject({ code: 250 })
      expect(yield* client.data("Subject: hi\r\n\r\nhello\r\n")).toMatchObject({ code: 250 })
      const [stored] = yield* SmtpTest.messages
      expect(new TextDecoder().decode(stored?.bytes)).toMatch(/^Received: from client\.example \(\[10\.1\.2\.3\]\)\r\n\tby mx\.example\.com with ESMTP id /)
    }))
})

layer(SmtpTest.layer(flakyApp).pipe(Layer.provide(MessageStore.layerMemory)))("the README's failure injection", (it) => {
  it.effect("fails the recipients it names, and about a tenth of the senders", () =>
    Effect.gen(function*() {
      const client = yield* SmtpTest.connect()
      yield* client.ehlo("client.example")
      const senders = []
      for (let i = 0; i < 50; i++) {
        const reply = yield* client.mailFrom(`s${i}@sender.example`)
        senders.push(reply.code)
        if (reply.code === 250) {
          expect(yield* client.rcptTo("full-bob@example.com")).toMatchObject({ code: 452, enhanced: "4.2.2", lines: ["Mailbox full"] })
          expect(yield* client.rcptTo("bob@example.com")).toMatchObject({ code: 250 })
          yield* client.command("RSET")
        }
      }
      const failed = senders.filter((code) => code === 451).length
      expect(failed).toBeGreaterThan(0)
      expect(failed).toBeLessThan(15)
    }))
})
