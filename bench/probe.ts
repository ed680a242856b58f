/**
 * A measuring probe preloaded into each benchmark server:
 *
 *   node --import ./bench/probe.ts bench/baseline-raw.ts 0      (spawned with an 'ipc' stdio entry)
 *
 * On a request `{ probe: "request", id }` over the IPC channel it answers
 * `{ probe: "snapshot", id, ... }` with cumulative counters of its process; the benchmark takes two snapshots around
 * a measured window and subtracts them:
 *
 * - cpuMicros: user + system CPU time of the whole process, every thread
 *   (main, GC helpers, the JIT compiler, libuv's pool), from process.cpuUsage(),
 *   which is getrusage(RUSAGE_SELF).
 * - allocatedBytes: bytes allocated on the JS heap since the probe loaded:
 *   (used heap now - used heap at load) + the sum over every GC of
 *   (used heap before it - used heap after it). A GC is the only thing that
 *   makes the used heap go down, so this adds back what each GC freed. The
 *   before/after figures come from v8.GCProfiler, which records them for every
 *   GC (scavenges, mark-compacts, incremental-marking and weak-callback pauses).
 *   Buffer contents live outside the JS heap and are not counted.
 * - gcs, markCompacts: how many GC pauses (of any kind / full ones) that covers.
 *
 * Without an IPC channel the probe does nothing. It prints nothing, and it does
 * not keep the process alive (the channel is unref'd).
 * Checked by bench/probe-check.ts against known allocations and /proc CPU times.
 */
import v8 from "node:v8"

export interface ProbeSnapshot {
  readonly probe: "snapshot"
  readonly id: number
  readonly cpuMicros: number
  readonly allocatedBytes: number
  readonly gcs: number
  readonly markCompacts: number
  readonly heapUsedBytes: number
}

export const isProbeSnapshot = (value: unknown): value is ProbeSnapshot =>
  typeof value === "object" &&
  value !== null &&
  "probe" in value &&
  value.probe === "snapshot" &&
  "id" in value &&
  typeof value.id === "number" &&
  "cpuMicros" in value &&
  typeof value.cpuMicros === "number" &&
  "allocatedBytes" in value &&
  typeof value.allocatedBytes === "number" &&
  "gcs" in value &&
  typeof value.gcs === "number" &&
  "markCompacts" in value &&
  typeof value.markCompacts === "number" &&
  "heapUsedBytes" in value &&
  typeof value.heapUsedBytes === "number"

const isRequest = (value: unknown): value is { probe: "request"; id: number } =>
  typeof value === "object" &&
  value !== null &&
  "probe" in value &&
  value.probe === "request" &&
  "id" in value &&
  typeof value.id === "number"

const usedHeap = (): number => v8.getHeapStatistics().used_heap_size

let profiler = new v8.GCProfiler()
profiler.start()
const heapAtStart = usedHeap()
let freed = 0
let gcs = 0
let markCompacts = 0

/**
 * Folds the GCs recorded so far into the totals and hands over to a fresh profiler.
 * The new one starts before the old one stops, so a GC that the old one's
 * stop() triggers while it turns its record into objects is caught by the new one;
 * nothing between the two calls allocates, so no GC is counted twice.
 */
const collect = (): void => {
  const next = new v8.GCProfiler()
  next.start()
  const report = profiler.stop()
  profiler = next
  for (const gc of report?.statistics ?? []) {
    freed += gc.beforeGC.heapStatistics.usedHeapSize - gc.afterGC.heapStatistics.usedHeapSize
    gcs++
    if (gc.gcType === "MarkSweepCompact") markCompacts++
  }
}

/** The current cumulative counters. */
const snapshot = (id: number): ProbeSnapshot => {
  collect()
  const used = usedHeap()
  const cpu = process.cpuUsage()
  return {
    probe: "snapshot",
    id,
    cpuMicros: cpu.user + cpu.system,
    allocatedBytes: freed + used - heapAtStart,
    gcs,
    markCompacts,
    heapUsedBytes: used
  }
}

if (process.send !== undefined) {
  process.on("message", (message: unknown) => {
    if (isRequest(message)) process.send?.(snapshot(message.id))
  })
  process.channel?.unref()
}
