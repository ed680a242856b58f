/**
 * In-memory stores for the rate limits and the greylist of one instance,
 * that forget what has expired.
 *
 * Effect's `RateLimiter.layerStoreMemory` and `Persistence.layerBackingMemory`
 * drop an expired entry only when its key is used again, and the keys of
 * these policies are senders, networks and triplets that spam software makes
 * up and never uses again: a long-running server would keep them all. These
 * keep the same counts and entries, and every `sweepEvery` (1 minute) remove
 * the expired ones (a Debug line says how many). For several instances, use Redis instead
 * (`RateLimiter.layerStoreRedis`, `Persistence.layerBackingRedis`).
 */
import * as Arr from "effect/Array"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as Persistence from "effect/persistence/Persistence"
import * as RateLimiter from "effect/persistence/RateLimiter"

export interface Options {
  /** How often expired entries are removed: 1 minute. */
  readonly sweepEvery?: Duration.Input
}

/** Removes from the maps the entries `expired` says have expired, every `every`, for the layer's scope. */
const sweeping = <V>(
  store: string,
  maps: () => Iterable<Map<string, V>>,
  expired: (value: V, now: number) => boolean,
  every: Duration.Input
) =>
  Clock.currentTimeMillis.pipe(
    Effect.flatMap((now) => {
      let removed = 0
      let kept = 0
      for (const map of maps()) {
        for (const [key, value] of map) {
          if (expired(value, now)) {
            map.delete(key)
            removed++
          } else kept++
        }
      }
      return removed === 0 ? Effect.void : Effect.logDebug("expired policy entries removed").pipe(Effect.annotateLogs({ store, removed, kept }))
    }),
    Effect.repeat(Schedule.spaced(every)),
    Effect.forkScoped
  )

/**
 * `RateLimiterStore` whose fixed-window counters are swept: each counts as
 * Effect's memory store counts (its expiry moves on by the refill rate per
 * token taken); token buckets and adaptive limits are Effect's own.
 */
export const layerRateLimiterStore = (options: Options = {}): Layer.Layer<RateLimiter.RateLimiterStore> =>
  Layer.effect(
    RateLimiter.RateLimiterStore,
    Effect.gen(function*() {
      const effects = yield* RateLimiter.RateLimiterStore.use(Effect.succeed).pipe(Effect.provide(RateLimiter.layerStoreMemory))
      const counters = new Map<string, { count: number; expiresAt: number }>()
      yield* sweeping("rate_limiter", () => [counters], (counter, now) => counter.expiresAt <= now, options.sweepEvery ?? "1 minute")
      return RateLimiter.RateLimiterStore.of({
        ...effects,
        fixedWindow: ({ key, tokens, refillRate, limit }) =>
          Effect.map(Clock.currentTimeMillis, (now): readonly [number, number] => {
            let counter = counters.get(key)
            if (counter === undefined || counter.expiresAt <= now) {
              counter = { count: 0, expiresAt: now }
              counters.set(key, counter)
            }
            if (limit !== undefined && counter.count + tokens > limit) return [counter.count + tokens, counter.expiresAt - now]
            counter.count += tokens
            counter.expiresAt += Duration.toMillis(refillRate) * tokens
            return [counter.count, counter.expiresAt - now]
          })
      })
    })
  )

/** `BackingPersistence` in memory whose entries are swept once their time to live has passed. */
export const layerBackingPersistence = (options: Options = {}): Layer.Layer<Persistence.BackingPersistence> =>
  Layer.effect(
    Persistence.BackingPersistence,
    Effect.gen(function*() {
      // Per store id: key → [value, expiry in milliseconds since the epoch, or none].
      const stores = new Map<string, Map<string, readonly [object, number | undefined]>>()
      yield* sweeping("persistence", () => stores.values(), ([, expiresAt], now) => expiresAt !== undefined && expiresAt <= now, options.sweepEvery ?? "1 minute")
      const storeOf = (storeId: string) => {
        const existing = stores.get(storeId)
        if (existing !== undefined) return existing
        const created = new Map<string, readonly [object, number | undefined]>()
        stores.set(storeId, created)
        return created
      }
      return Persistence.BackingPersistence.of({
        make: (storeId) =>
          Clock.clockWith((clock) => {
            const entries = storeOf(storeId)
            const read = (key: string) => {
              const entry = entries.get(key)
              if (entry === undefined) return undefined
              if (entry[1] !== undefined && entry[1] <= clock.currentTimeMillisUnsafe()) {
                entries.delete(key)
                return undefined
              }
              return entry[0]
            }
            const write = (key: string, value: object, ttl: Duration.Duration | undefined) =>
              void entries.set(key, [value, ttl === undefined ? undefined : clock.currentTimeMillisUnsafe() + Duration.toMillis(ttl)])
            return Effect.succeed({
              get: (key) => Effect.sync(() => read(key)),
              getMany: (keys) => Effect.sync(() => Arr.map(keys, read)),
              set: (key, value, ttl) => Effect.sync(() => write(key, value, ttl)),
              setMany: (all) => Effect.sync(() => all.forEach(([key, value, ttl]) => write(key, value, ttl))),
              remove: (key) => Effect.sync(() => void entries.delete(key)),
              clear: Effect.sync(() => entries.clear())
            })
          })
      })
    })
  )

/** What `rateLimits` and `greylisting` need, in memory and swept: the `RateLimiter` and the greylist's store. */
export const layer = (options: Options = {}): Layer.Layer<RateLimiter.RateLimiter | Persistence.BackingPersistence> =>
  Layer.mergeAll(RateLimiter.layer.pipe(Layer.provide(layerRateLimiterStore(options))), layerBackingPersistence(options))
