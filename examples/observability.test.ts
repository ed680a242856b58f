/**
 * The README's observability at work: a server built over it is scraped and
 * traced; the collector is a small HTTP server on 127.0.0.1.
 */
import { expect, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { HttpServer } from "effect/http"
import { deliver, MessageStore, SmtpApp, SmtpServer, SmtpServerConfig } from "effect-smtp"
import { collector, send, spansIn } from "../test/support.ts"
import { observability } from "./observability.js"

it.live("the metrics are scraped at /metrics and the session's spans reach the collector", () =>
  Effect.gen(function*() {
    const otlp = yield* collector
    const scraped = yield* Effect.gen(function*() {
      const context = yield* Layer.build(
        SmtpServer.layer(SmtpApp.empty.pipe(deliver)).pipe(
          Layer.provide([SmtpServerConfig.layer({ port: 0 }), MessageStore.layerMemory]),
          Layer.provideMerge(observability({ metricsPort: 0, otlpUrl: otlp.url }))
        )
      )
      const port = Context.get(context, SmtpServer).address.port
      expect(yield* send(port, { from: "a@x.test", to: "b@x.test", text: "hello" })).toMatchObject({ ok: true })
      const metrics = HttpServer.formatAddress(Context.get(context, HttpServer.HttpServer).address)
      return yield* Effect.promise(() => fetch(`${metrics}/metrics`).then((response) => response.text()))
    }).pipe(Effect.scoped)
    expect(scraped).toMatch(/^smtp_messages_accepted_total 1$/m)
    expect(spansIn(otlp.bodies.get("/v1/traces") ?? []).map((span) => span.name)).toContain("smtp.data")
  }))
