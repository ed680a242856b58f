/**
 * Runs the README example over real sockets: TLS required, AUTH through the
 * `Users` service, relay denied for other domains.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer, Redacted } from "effect"
import { readFileSync } from "node:fs"
import { SmtpServer, SmtpServerConfig } from "effect-smtp"
import { send } from "../test/support.ts"
import { server } from "./server.ts"

const config = SmtpServerConfig.layer({
  host: "127.0.0.1",
  port: 0,
  tls: {
    cert: readFileSync(new URL("../test/fixtures/localhost.crt", import.meta.url), "utf8"),
    key: Redacted.make(readFileSync(new URL("../test/fixtures/localhost.key", import.meta.url), "utf8"))
  }
})

const secure = { ignoreTLS: false, requireTLS: true, tls: { rejectUnauthorized: false } }

describe("README example", () => {
  it.live("accepts local mail over TLS, checks passwords with Users, denies relaying", () =>
    Effect.gen(function*() {
      const context = yield* Layer.build(server.pipe(Layer.provide(config)))
      const { port } = Context.get(context, SmtpServer).address
      const mail = { from: "bob@elsewhere.test", to: "alice@example.test", text: "hello" }
      expect(yield* send(port, mail)).toMatchObject({ ok: false, code: 530 })
      expect(yield* send(port, mail, secure)).toMatchObject({ ok: true })
      expect(yield* send(port, { ...mail, to: "carol@elsewhere.test" }, secure)).toMatchObject({ ok: false, code: 550 })
      const login = { ...secure, auth: { user: "alice", pass: "wonderland" } }
      expect(yield* send(port, mail, login)).toMatchObject({ ok: true })
      const wrong = yield* send(port, mail, { ...secure, auth: { user: "alice", pass: "guess" } })
      expect(wrong).toMatchObject({ ok: false, code: 535 })
    }))
})
