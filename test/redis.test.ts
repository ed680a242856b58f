/**
 * The policies' shared stores on a real `redis-server` (started here on a
 * free 127.0.0.1 port, without persistence): two server instances, each with
 * its own Redis client, share one rate limit and one greylist; and Redis
 * stopped in the middle of a run leaves the policies as their
 * `onStoreFailure` says (open: mail goes through, with a warning and a count;
 * closed: `451 4.3.0`), and working again once it is back.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as NodeRedis from "@effect/platform-node/NodeRedis"
import { Context, Effect, Layer, Logger, Metric, References, Schedule } from "effect"
import * as Persistence from "effect/persistence/Persistence"
import * as RateLimiter from "effect/persistence/RateLimiter"
import {
  deliver,
  greylisting,
  MessageStore,
  rateLimits,
  SmtpApp,
  SmtpMetrics,
  SmtpServer,
  SmtpServerConfig
} from "../src/index.ts"
import { connect, send } from "./support.ts"
import { type RedisProcess, startRedis } from "./redisServer.ts"

let redis: RedisProcess
beforeAll(async () => {
  redis = await startRedis()
}, 30_000)
afterAll(() => redis?.stop())

let tests = 0
/** Keys of a test of their own: the instances of one test share them, no other test does. */
const isolated = () => `test-${process.pid}-${++tests}`

/** Warnings and errors logged by the instances, and the reasons the policies gave. */
const capture = () => {
  const warnings: Array<string> = []
  const reasons: Array<string> = []
  const logger = Logger.make<unknown, void>(({ fiber, logLevel, message }) => {
    if (logLevel !== "Warn" && logLevel !== "Error") return
    warnings.push([message].flat().map(String).join(" "))
    const reason = fiber.getRef(References.CurrentLogAnnotations)["reason"]
    if (typeof reason === "string") reasons.push(reason)
  })
  return { warnings, reasons, layer: Logger.layer([logger]) }
}

/** One server instance on 127.0.0.1 with a Redis client of its own: its port, and its client's readiness. */
const instance = <Cs, Ts, R extends MessageStore | RateLimiter.RateLimiter | Persistence.BackingPersistence>(
  app: SmtpApp.SmtpApp<Cs, Ts, R>,
  // Quiet unless the test captures the lines.
  logger: Layer.Layer<never> = Logger.layer([])
) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      SmtpServer.layer(app).pipe(
        Layer.provide(MessageStore.layerMemory),
        Layer.provide(Layer.mergeAll(RateLimiter.layer.pipe(Layer.provide(RateLimiter.layerStoreRedis())), Persistence.layerBackingRedis)),
        Layer.provideMerge(NodeRedis.layer({ url: redis.url, disableOfflineQueue: true })),
        Layer.provide(SmtpServerConfig.layer({ host: "127.0.0.1", port: 0, hostname: "mx.test" })),
        Layer.provide(logger)
      )
    )
    return { port: Context.get(context, SmtpServer).address.port, client: Context.get(context, NodeRedis.NodeRedis).client }
  })

const mail = (from: string, to = "b@example.test") => ({ envelope: { from, to: [to] }, raw: `From: ${from}\r\nSubject: hi\r\n\r\nhello\r\n` })

/** Waits until `client` is connected again after a restart of Redis (its reconnects back off up to about 2 seconds). */
const reconnected = (client: { readonly isReady: boolean }) =>
  Effect.suspend(() => client.isReady ? Effect.void : Effect.fail("not yet")).pipe(
    Effect.retry({ schedule: Schedule.spaced("100 millis"), times: 100 })
  )

const failures = (policy: SmtpMetrics.StorePolicy) => Effect.map(Metric.value(SmtpMetrics.policyStoreFailures(policy)), (state) => state.count)

describe("Redis-backed policies", () => {
  it.live("two instances share one rate limit: the N+1st message across both is refused", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(rateLimits({ senderMessages: { limit: 4, window: "1 hour" }, prefix: isolated() }), deliver)
      const a = yield* instance(app)
      const b = yield* instance(app)
      const results = []
      for (const port of [a.port, b.port, a.port, b.port, a.port, b.port]) results.push(yield* send(port, mail("bulk@sender.test")))
      expect(results.map((result) => result.ok)).toEqual([true, true, true, true, false, false])
      expect(results[4]!.response).toMatch(/^451 4\.7\.1 Too many messages from this sender, try again in \d+ seconds$/)
      expect(results[5]!.response).toMatch(/^451 4\.7\.1 Too many messages from this sender, try again in \d+ seconds$/)
      // Another sender has a count of its own.
      expect((yield* send(b.port, mail("other@sender.test"))).ok).toBe(true)
    }).pipe(Effect.scoped), 30_000)

  it.live("two instances share one connection limit per client network: the N+1st connection gets 421 4.7.0", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(rateLimits({ connections: { limit: 3, window: "1 hour" }, prefix: isolated() }), deliver)
      const a = yield* instance(app)
      const b = yield* instance(app)
      for (const port of [a.port, b.port, a.port]) {
        const client = yield* connect(port)
        expect(yield* client.reply).toMatch(/^220 /)
      }
      const refused = yield* connect(b.port)
      expect(yield* refused.reply).toMatch(/^421 4\.7\.0 Too many connections from your network, try again in \d+ seconds$/)
    }).pipe(Effect.scoped), 30_000)

  it.live("two instances share one greylist: the retry is judged by the entry the other instance wrote", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(greylisting({ delay: "1 second", storeId: isolated() }), deliver)
      const a = yield* instance(app)
      const b = yield* instance(app)
      const first = yield* send(a.port, mail("new@sender.test"))
      expect(first.response).toMatch(/^451 4\.7\.1 Greylisted, try again in 1 seconds$/)
      // Too early on the other instance: it knows the triplet, and says how long is left.
      const early = yield* send(b.port, mail("new@sender.test"))
      expect(early.response).toMatch(/^451 4\.7\.1 Greylisted, try again in 1 seconds$/)
      yield* Effect.sleep("1100 millis")
      expect((yield* send(b.port, mail("new@sender.test"))).ok).toBe(true)
      // Passed on one instance, it passes on the other at once; a new recipient starts its own wait.
      expect((yield* send(a.port, mail("new@sender.test"))).ok).toBe(true)
      expect((yield* send(a.port, mail("new@sender.test", "c@example.test"))).response).toMatch(/^451 4\.7\.1 Greylisted/)
    }).pipe(Effect.scoped), 30_000)

  it.live("Redis stopped mid-run, failing open: mail goes through with a warning and a count, and limits hold again once it is back", () =>
    Effect.gen(function*() {
      const logs = capture()
      const a = yield* instance(SmtpApp.empty.pipe(rateLimits({ senderMessages: { limit: 2, window: "1 hour" }, prefix: isolated() }), deliver), logs.layer)
      const g = yield* instance(SmtpApp.empty.pipe(greylisting({ storeId: isolated() }), deliver), logs.layer)
      expect((yield* send(a.port, mail("s@sender.test"))).ok).toBe(true)
      expect((yield* send(g.port, mail("s@sender.test"))).response).toMatch(/^451 4\.7\.1 Greylisted/)
      const before = { rate: yield* failures("rate_limits"), grey: yield* failures("greylisting") }

      yield* Effect.promise(() => redis.stop())
      const during = [yield* send(a.port, mail("s@sender.test")), yield* send(a.port, mail("s@sender.test")), yield* send(g.port, mail("t@sender.test"))]
      expect(during.map((result) => result.ok)).toEqual([true, true, true])
      expect(yield* failures("rate_limits")).toBeGreaterThanOrEqual(before.rate + 2)
      expect(yield* failures("greylisting")).toBeGreaterThanOrEqual(before.grey + 1)
      expect(logs.warnings.filter((line) => line === "policy store failed, command let through").length).toBeGreaterThanOrEqual(3)
      // The reason names what failed, down to Redis's own words where the store passes them on.
      expect(logs.reasons.some((reason) => reason.endsWith("from Redis: The client is offline"))).toBe(true)

      yield* Effect.promise(() => redis.restart())
      yield* reconnected(a.client)
      yield* reconnected(g.client)
      // Redis restarted empty: the count starts over at the limit of 2.
      const after = [yield* send(a.port, mail("s@sender.test")), yield* send(a.port, mail("s@sender.test")), yield* send(a.port, mail("s@sender.test"))]
      expect(after.map((result) => result.ok)).toEqual([true, true, false])
      expect(after[2]!.response).toMatch(/^451 4\.7\.1 Too many messages from this sender/)
    }).pipe(Effect.scoped), 60_000)

  it.live("Redis stopped mid-run, failing closed: 421 4.3.0 at connect, 451 4.3.0 at MAIL and RCPT, and mail again once it is back", () =>
    Effect.gen(function*() {
      const logs = capture()
      const prefix = isolated()
      const closed = { onStoreFailure: "closed", storeTimeout: "1 second" } as const
      const senders = yield* instance(SmtpApp.empty.pipe(rateLimits({ senderMessages: { limit: 100, window: "1 hour" }, prefix, ...closed }), deliver), logs.layer)
      const connections = yield* instance(SmtpApp.empty.pipe(rateLimits({ connections: { limit: 100, window: "1 hour" }, prefix, ...closed }), deliver), logs.layer)
      const grey = yield* instance(SmtpApp.empty.pipe(greylisting({ storeId: isolated(), ...closed }), deliver), logs.layer)
      expect((yield* send(senders.port, mail("s@sender.test"))).ok).toBe(true)

      yield* Effect.promise(() => redis.stop())
      expect((yield* send(senders.port, mail("s@sender.test"))).response).toBe("451 4.3.0 Policy service unavailable, try again later")
      expect((yield* send(grey.port, mail("s@sender.test"))).response).toBe("451 4.3.0 Policy service unavailable, try again later")
      const refused = yield* connect(connections.port)
      expect(yield* refused.reply).toBe("421 4.3.0 Policy service unavailable, try again later")
      expect(logs.warnings.filter((line) => line === "policy store failed, command refused").length).toBeGreaterThanOrEqual(3)

      yield* Effect.promise(() => redis.restart())
      yield* reconnected(senders.client)
      expect((yield* send(senders.port, mail("s@sender.test"))).ok).toBe(true)
    }).pipe(Effect.scoped), 60_000)
})
