/**
 * The server's metrics as plain numbers, which the registry reads when it is
 * read (a scrape, `Metric.value`): an event costs an addition, not a lookup
 * of its series in the registry.
 *
 * Each series of `SmtpMetrics` is registered once per metric registry, with
 * `Metric.registerUnsafe`; every engine built with that registry adds to the
 * same numbers. A series with labels is registered when it is first used.
 */
import * as Context from "effect/Context"
import * as Metric from "effect/Metric"
import * as SmtpMetrics from "../../layers/SmtpMetrics.ts"

/** A count some series reads. */
export interface Count {
  value: number
}

const ignore = (): void => undefined

/** Observations sorted into buckets, as Effect's histograms sort them. */
export class Histogram {
  private readonly boundaries: ReadonlyArray<number>
  private readonly values: Uint32Array
  private count = 0
  private sum = 0
  private min = Number.MAX_VALUE
  private max = -Number.MAX_VALUE

  constructor(boundaries: ReadonlyArray<number>) {
    this.boundaries = [...boundaries].sort((a, b) => a - b)
    this.values = new Uint32Array(this.boundaries.length + 1)
  }

  observe(value: number): void {
    let bucket = 0
    while (bucket < this.boundaries.length && value > this.boundaries[bucket]!) bucket++
    this.values[bucket]!++
    this.count++
    this.sum += value
    if (value < this.min) this.min = value
    if (value > this.max) this.max = value
  }

  state(): Metric.HistogramState {
    let cumulated = 0
    const buckets = this.boundaries.map((boundary, index): [number, number] => [boundary, cumulated += this.values[index]!])
    return { buckets, count: this.count, min: this.min, max: this.max, sum: this.sum }
  }
}

/** Registers `metric` in the registry of `context`, read from `get`. */
const register = <S>(metric: Metric.Metric<number, S>, context: Context.Context<never>, get: () => S): void =>
  void Metric.registerUnsafe(metric, context, { get, update: ignore, modify: ignore })

const counter = (metric: Metric.Counter<number>, context: Context.Context<never>): Count => {
  const count: Count = { value: 0 }
  register(metric, context, () => ({ count: count.value, incremental: true }))
  return count
}

const histogram = (metric: Metric.Histogram<number>, boundaries: ReadonlyArray<number>, context: Context.Context<never>): Histogram => {
  const observed = new Histogram(boundaries)
  register(metric, context, () => observed.state())
  return observed
}

/** One registry's series. */
export class MetricSeries {
  private readonly context: Context.Context<never>
  readonly connectionsOpened: Count
  readonly connectionsActive: Count
  readonly tlsSessions: { readonly starttls: Count; readonly implicit: Count }
  readonly authAttempts: { readonly success: Count; readonly failure: Count }
  readonly messagesAccepted: Count
  readonly receivedBytes: Count
  readonly messageSize: Histogram
  private readonly counts = new Map<string, Count>()
  private readonly histograms = new Map<string, Histogram>()

  constructor(context: Context.Context<never>) {
    this.context = context
    this.connectionsOpened = counter(SmtpMetrics.connectionsOpened, context)
    const active: Count = { value: 0 }
    register(SmtpMetrics.connectionsActive, context, () => ({ value: active.value }))
    this.connectionsActive = active
    this.tlsSessions = {
      starttls: counter(SmtpMetrics.tlsSessions("starttls"), context),
      implicit: counter(SmtpMetrics.tlsSessions("implicit"), context)
    }
    this.authAttempts = {
      success: counter(SmtpMetrics.authAttempts("success"), context),
      failure: counter(SmtpMetrics.authAttempts("failure"), context)
    }
    this.messagesAccepted = counter(SmtpMetrics.messagesAccepted, context)
    this.receivedBytes = counter(SmtpMetrics.receivedBytes, context)
    this.messageSize = histogram(SmtpMetrics.messageSize, SmtpMetrics.messageSizeBoundaries, context)
  }

  rejections(phase: SmtpMetrics.PhaseName, replyClass: SmtpMetrics.ReplyClass, enhanced: string): Count {
    const key = `${phase} ${replyClass} ${enhanced}`
    let count = this.counts.get(key)
    if (count === undefined) this.counts.set(key, count = counter(SmtpMetrics.rejections(phase, replyClass, enhanced), this.context))
    return count
  }

  defects(phase: SmtpMetrics.PhaseName): Count {
    let count = this.counts.get(phase)
    if (count === undefined) this.counts.set(phase, count = counter(SmtpMetrics.defects(phase), this.context))
    return count
  }

  phaseDuration(phase: SmtpMetrics.PhaseName): Histogram {
    let durations = this.histograms.get(phase)
    if (durations === undefined) {
      this.histograms.set(phase, durations = histogram(SmtpMetrics.phaseDuration(phase), SmtpMetrics.phaseDurationBoundaries, this.context))
    }
    return durations
  }
}

const byRegistry = new WeakMap<Metric.MetricRegistry, MetricSeries>()

/** The series of the registry in `context`. */
export const of = (context: Context.Context<never>): MetricSeries => {
  const registry = Context.get(context, Metric.MetricRegistry)
  let series = byRegistry.get(registry)
  if (series === undefined) byRegistry.set(registry, series = new MetricSeries(context))
  return series
}
