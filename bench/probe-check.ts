/**
 * Checks bench/probe.ts the way the benchmark uses it: a child process started
 * with `--import ./bench/probe.ts` and an IPC channel does a known amount of
 * work between two probe snapshots, and the probe's figures are compared with
 * what that work must have cost.
 *
 *   node bench/probe-check.ts
 *
 * - Allocation: the child allocates `new Array(128)` objects, 32 (JSArray) + 16
 *   (FixedArray header) + 128 * 8 bytes each on 64-bit Node without pointer
 *   compression, (a) as short-lived garbage (scavenges only) and (b) kept in a
 *   ring of 100,000 so that they are promoted and die in old space (mark-compacts).
 *   The size of one array is also measured directly (a batch kept alive between
 *   two forced GCs) to confirm the formula. Pass: within 10% of count x size.
 * - Resolution: windows in which nothing is allocated read within 1 MiB of 0
 *   (the used heap also moves outside GC pauses, by a few hundred KB).
 * - CPU: the probe's figure (process.cpuUsage) against utime + stime of
 *   /proc/<pid>/stat, all threads, for a 1 s busy loop and for workload (b),
 *   which keeps GC helper threads busy. Pass: within 10% (or 30 ms).
 *
 * Exits 1 if a check fails. Runs in about 10 s; nothing leaves the machine.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process"
import { readFileSync } from "node:fs"
import path from "node:path"
import { isProbeSnapshot, type ProbeSnapshot } from "./probe.ts"

/**
 * The used heap also moves outside GC pauses by a few hundred KB (allocation
 * buffers of background threads such as the JIT compiler are counted whole while
 * they are held and given back later), so a window is only good to about this.
 */
const IDLE_BYTES = 1024 * 1024

const SLOTS = 128
const ARRAY_BYTES = 32 + 16 + SLOTS * 8

// ---------------------------------------------------------------------------
// Child: does the work the parent asks for

type Job =
  | { readonly check: "garbage"; readonly count: number }
  | { readonly check: "promoted"; readonly count: number; readonly ring: number }
  | { readonly check: "busy"; readonly ms: number }
  | { readonly check: "size"; readonly count: number }

const isJob = (value: unknown): value is Job =>
  typeof value === "object" && value !== null && "check" in value && typeof value.check === "string"

let keep: Array<unknown> = []

const runJob = (job: Job): number => {
  switch (job.check) {
    case "garbage": {
      const sink: Array<unknown> = new Array(16)
      for (let i = 0; i < job.count; i++) sink[i & 15] = new Array(SLOTS)
      keep = sink
      return 0
    }
    case "promoted": {
      const ring: Array<unknown> = new Array(job.ring)
      for (let i = 0; i < job.count; i++) ring[i % job.ring] = new Array(SLOTS)
      keep = []
      return 0
    }
    case "busy": {
      const end = performance.now() + job.ms
      let x = 0
      while (performance.now() < end) x = (x * 31 + 7) % 1_000_003
      return x
    }
    case "size": {
      const gc = (globalThis as { gc?: () => void }).gc
      if (gc === undefined) return Number.NaN
      const batch: Array<unknown> = new Array(job.count)
      gc()
      const before = process.memoryUsage().heapUsed
      for (let i = 0; i < job.count; i++) batch[i] = new Array(SLOTS)
      gc()
      const after = process.memoryUsage().heapUsed
      keep = batch
      keep = []
      return (after - before) / job.count
    }
  }
}

const child = (): void => {
  process.on("message", (message: unknown) => {
    if (isJob(message)) process.send?.({ done: runJob(message) })
  })
  // the probe unrefs the channel; this child lives on it until the parent stops it
  process.channel?.ref()
}

// ---------------------------------------------------------------------------
// Parent

const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100
  } catch {
    return 100
  }
})()

/** utime + stime of every thread of `pid`, in microseconds, from /proc/<pid>/stat. */
const procCpuMicros = (pid: number): number => {
  const stat = readFileSync(`/proc/${pid}/stat`, "latin1")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return ((Number(fields[11]) + Number(fields[12])) / CLK_TCK) * 1e6
}

const reply = (proc: ChildProcess, accept: (m: unknown) => boolean): Promise<unknown> =>
  new Promise((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer)
      proc.off("message", onMessage)
      proc.off("exit", onExit)
    }
    const timer = setTimeout(() => {
      done()
      reject(new Error("child did not answer within 60 s"))
    }, 60_000)
    const onMessage = (m: unknown): void => {
      if (!accept(m)) return
      done()
      resolve(m)
    }
    const onExit = (code: number | null): void => {
      done()
      reject(new Error(`child exited (code ${code})`))
    }
    proc.on("message", onMessage)
    proc.on("exit", onExit)
  })

let nextId = 0
const probe = async (proc: ChildProcess): Promise<ProbeSnapshot> => {
  const id = ++nextId
  const answer = reply(proc, (m) => isProbeSnapshot(m) && m.id === id)
  proc.send({ probe: "request", id })
  const m = await answer
  if (!isProbeSnapshot(m)) throw new Error("unexpected probe answer")
  return m
}

const run = async (proc: ChildProcess, job: Job): Promise<number> => {
  const answer = reply(proc, (m) => typeof m === "object" && m !== null && "done" in m)
  proc.send(job)
  const m = await answer
  return typeof m === "object" && m !== null && "done" in m && typeof m.done === "number" ? m.done : Number.NaN
}

interface Window {
  readonly allocated: number
  readonly cpu: number
  readonly procCpu: number
  readonly gcs: number
  readonly markCompacts: number
}

const measure = async (proc: ChildProcess, pid: number, job: Job): Promise<Window> => {
  const a = await probe(proc)
  const procA = procCpuMicros(pid)
  await run(proc, job)
  const b = await probe(proc)
  const procB = procCpuMicros(pid)
  return {
    allocated: b.allocatedBytes - a.allocatedBytes,
    cpu: b.cpuMicros - a.cpuMicros,
    procCpu: procB - procA,
    gcs: b.gcs - a.gcs,
    markCompacts: b.markCompacts - a.markCompacts
  }
}

let failed = 0

const suite = async (flags: ReadonlyArray<string>): Promise<void> => {
  process.stdout.write(`\nchild: node ${[...flags, "--expose-gc", "--import ./bench/probe.ts"].join(" ")}\n`)
  const self = import.meta.filename
  const probeUrl = new URL("./probe.ts", import.meta.url).href
  const proc = spawn(process.execPath, [...flags, "--expose-gc", "--import", probeUrl, self, "child"], {
    cwd: path.dirname(import.meta.dirname),
    stdio: ["ignore", "inherit", "inherit", "ipc"]
  })
  const pid = proc.pid
  if (pid === undefined) throw new Error("could not start the child")
  const check = (name: string, measured: number, expected: number, tolerance: number, floor = 0): void => {
    const error = Math.abs(measured - expected)
    const ok = error <= Math.max(tolerance * Math.abs(expected), floor)
    if (!ok) failed++
    const pct = expected === 0 ? "" : ` (${(((measured - expected) / expected) * 100).toFixed(1)}%)`
    process.stdout.write(`${ok ? "ok  " : "FAIL"} ${name}: measured ${measured.toFixed(0)}, expected ${expected.toFixed(0)}${pct}\n`)
  }
  try {
    // let start-up settle, then measure what one snapshot pair costs by itself
    await run(proc, { check: "garbage", count: 1000 })
    for (let i = 1; i <= 3; i++) {
      const idle = await measure(proc, pid, { check: "busy", ms: 0 })
      check(`allocated, idle window ${i} (two snapshots, one empty job; ${idle.gcs} GC pauses), bytes`, idle.allocated, 0, 0, IDLE_BYTES)
    }

    const size = await run(proc, { check: "size", count: 20_000 })
    check(`size of one new Array(${SLOTS}), kept alive between forced GCs, bytes`, size, ARRAY_BYTES, 0.02)

    const garbageCount = 200_000
    const garbage = await measure(proc, pid, { check: "garbage", count: garbageCount })
    process.stdout.write(`garbage: ${garbage.gcs} GC pauses, ${garbage.markCompacts} mark-compacts\n`)
    check(`allocated, ${garbageCount} short-lived arrays, bytes`, garbage.allocated, garbageCount * ARRAY_BYTES, 0.1)

    const promotedCount = 400_000
    const promoted = await measure(proc, pid, { check: "promoted", count: promotedCount, ring: 100_000 })
    process.stdout.write(`promoted: ${promoted.gcs} GC pauses, ${promoted.markCompacts} mark-compacts\n`)
    check(
      `allocated, ${promotedCount} arrays in a ring of 100000 (promoted, freed by mark-compacts), bytes`,
      promoted.allocated,
      // the ring itself: a FixedArray of 100,000 slots plus its JSArray
      promotedCount * ARRAY_BYTES + 16 + 100_000 * 8 + 32,
      0.1
    )
    if (promoted.markCompacts === 0) {
      failed++
      process.stdout.write("FAIL promoted: no mark-compact ran, the old-space path was not exercised\n")
    }
    check("CPU of the promoted workload, probe vs /proc (all threads), µs", promoted.cpu, promoted.procCpu, 0.1, 30_000)

    const busy = await measure(proc, pid, { check: "busy", ms: 1000 })
    check("CPU of a 1 s busy loop, probe vs /proc, µs", busy.cpu, busy.procCpu, 0.1, 30_000)
    check("CPU of a 1 s busy loop, probe vs 1 s, µs", busy.cpu, 1_000_000, 0.1)
  } finally {
    proc.kill("SIGTERM")
  }
}

const parent = async (): Promise<void> => {
  await suite([])
  // a 1 MiB young generation: hundreds of scavenges and many promotions per window
  await suite(["--max-semi-space-size=1"])
  process.stdout.write(failed === 0 ? "\nprobe check passed\n" : `\nprobe check: ${failed} failed\n`)
  process.exitCode = failed === 0 ? 0 : 1
}

if (process.argv[2] === "child") child()
else await parent()
