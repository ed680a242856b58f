/**
 * The effect-smtp benchmark: the Effect layer against raw smtp-server and a
 * Koa-compose-style promise middleware layer, on the same machine, in the same run.
 *
 *   node bench/run.ts              full run: 5 alternating rounds, medians
 *   node bench/run.ts --quick      smoke test: one round, small counts
 *   node bench/run.ts --rounds N   N rounds (with or without --quick)
 *   node bench/run.ts --servers raw,effect,nometrics   only these servers
 *
 * Servers (each a child process started with port 0, announcing `listening PORT`,
 * stopped with SIGTERM): bench/baseline-raw.ts, bench/baseline-compose.ts and
 * bench/server.ts (the Effect server; skipped if the file does not exist yet),
 * also as `nometrics`, with the `metrics` setting off.
 * Load comes from bench/loadgen.ts, run as its own process so that it has its
 * own event loop and this process stays free to sample the server's RSS.
 * Everything listens on and connects to 127.0.0.1 only, and every load run is
 * bounded in messages and in time.
 *
 * Every round starts a fresh process of each server, in an order rotated per
 * round, and warms it up (the plan's `warmup` loads: every workload's shape,
 * so that the JIT has compiled each path) before its measured workloads.
 * For throughput the servers run with bench/probe.ts preloaded and an IPC
 * channel: around each measured load the probe reports the server's whole-process
 * CPU time (user + system, all threads) and the bytes allocated on its JS heap,
 * which are divided by the messages accepted. `node bench/probe-check.ts`
 * checks the probe against known allocations and /proc CPU times.
 *
 * The table is printed and written to bench/results-latest.md.
 */
import { spawn, type ChildProcess } from "node:child_process"
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { createInterface } from "node:readline"
import { setTimeout as sleep } from "node:timers/promises"
import { parseArgs } from "node:util"
import { SmtpClient, formatResult, type LoadOptions, type LoadResult } from "./loadgen.ts"
import { isProbeSnapshot, type ProbeSnapshot } from "./probe.ts"

const BENCH = import.meta.dirname
const ROOT = path.dirname(BENCH)
const LOADGEN = path.join(BENCH, "loadgen.ts")
const PROBE_URL = new URL("./probe.ts", import.meta.url).href
const RESULTS = path.join(BENCH, "results-latest.md")

// ---------------------------------------------------------------------------
// Configuration

interface ServerSpec {
  readonly name: string
  readonly label: string
  readonly file: string
  /** arguments after the port */
  readonly args?: ReadonlyArray<string>
}

interface Workload {
  readonly id: string
  readonly label: string
  /** for the columns of the results table */
  readonly short: string
  readonly load: Omit<LoadOptions, "port">
}

interface Plan {
  readonly quick: boolean
  readonly rounds: number
  readonly warmup: ReadonlyArray<Omit<LoadOptions, "port">>
  readonly workloads: ReadonlyArray<Workload>
  readonly idleConnections: number
  readonly bigMessageSize: number
}

const KiB = 1024
const MiB = 1024 * 1024

const ALL_SERVERS: ReadonlyArray<ServerSpec> = [
  { name: "raw", label: "raw smtp-server", file: "baseline-raw.ts" },
  { name: "compose", label: "compose (promise middleware)", file: "baseline-compose.ts" },
  { name: "effect", label: "effect-smtp", file: "server.ts" },
  // The same server with the `metrics` setting off: what the metrics cost, measured in the same run.
  { name: "nometrics", label: "effect-smtp without metrics", file: "server.ts", args: ["--no-metrics"] }
]

const workload = (
  id: string,
  label: string,
  short: string,
  messageSize: number,
  parallel: number,
  reuse: boolean,
  messages: number,
  timeLimitSec: number
): Workload => ({ id, label, short, load: { messageSize, parallel, reuse, messages, timeLimitSec } })

/** The same shape as `w`, with fewer messages and its own time limit: a warm-up load. */
const warm = (w: Workload, messages: number, timeLimitSec: number): Omit<LoadOptions, "port"> => ({
  ...w.load,
  messages,
  timeLimitSec
})

const W1 = workload("w1", "1 KB, 20 sessions, reused connections", "w1 1 KB x20 reused", KiB, 20, true, 20_000, 10)
const W2 = workload("w2", "1 KB, 200 sessions, one connection per message", "w2 1 KB x200 new conn", KiB, 200, false, 4_000, 10)
const W3 = workload("w3", "1 MB, 4 sessions, reused connections", "w3 1 MB x4 reused", MiB, 4, true, 500, 15)

// Warm-up: every workload's shape runs before the first measured load, so that
// each code path (reused sessions, connection setup and QUIT, large DATA) has been
// hot long enough for the JIT. The effect server's CPU per message settles after
// about 4,000-5,000 messages of w1's shape (raw smtp-server's after about 3,000);
// w1's shape runs twice so that the log shows whether it has settled.
const FULL: Plan = {
  quick: false,
  rounds: 5,
  warmup: [warm(W1, 4000, 10), warm(W1, 4000, 10), warm(W2, 1000, 10), warm(W3, 40, 10)],
  workloads: [W1, W2, W3],
  idleConnections: 1000,
  bigMessageSize: 100 * MiB
}

const QUICK: Plan = {
  quick: true,
  rounds: 1,
  warmup: [warm(W1, 1000, 5), warm(W2, 300, 5), warm(W3, 10, 5)],
  workloads: [
    { ...W1, load: { ...W1.load, messages: 2_000, timeLimitSec: 5 } },
    { ...W2, load: { ...W2.load, messages: 600, timeLimitSec: 5 } },
    { ...W3, load: { ...W3.load, messages: 40, timeLimitSec: 5 } }
  ],
  idleConnections: 200,
  bigMessageSize: 100 * MiB
}

// ---------------------------------------------------------------------------
// Child processes

const children = new Set<ChildProcess>()

const killAll = (): void => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
  }
}
process.on("exit", killAll)
const STOP_SIGNALS: ReadonlyArray<NodeJS.Signals> = ["SIGINT", "SIGTERM"]
for (const signal of STOP_SIGNALS) {
  process.once(signal, () => {
    process.stderr.write(`\n${signal}: stopping the benchmark\n`)
    killAll()
    process.exit(130)
  })
}

const track = (child: ChildProcess): ChildProcess => {
  children.add(child)
  child.once("exit", () => children.delete(child))
  return child
}

interface ExitStatus {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

const exited = (child: ChildProcess): Promise<ExitStatus> =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve({ code: child.exitCode, signal: child.signalCode })
    : new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })))

/** Resolves with the status, or undefined if the child is still running after `ms`. */
const exitedWithin = async (child: ChildProcess, ms: number): Promise<ExitStatus | undefined> => {
  const timer = new AbortController()
  const result = await Promise.race([
    exited(child),
    sleep(ms, undefined, { signal: timer.signal }).catch(() => undefined)
  ])
  timer.abort()
  return result
}

interface RunningServer {
  readonly spec: ServerSpec
  readonly child: ChildProcess
  readonly pid: number
  readonly port: number
  /** started with bench/probe.ts and an IPC channel */
  readonly probed: boolean
}

const STARTUP_TIMEOUT_MS = 60_000
const SHUTDOWN_TIMEOUT_MS = 15_000
const PROBE_TIMEOUT_MS = 10_000

/** Starts a server; with `probed`, preloads bench/probe.ts and opens an IPC channel to it. */
async function startServer(spec: ServerSpec, probed = false): Promise<RunningServer> {
  const script = [path.join(BENCH, spec.file), "0", ...(spec.args ?? [])]
  const child = track(
    spawn(process.execPath, probed ? ["--import", PROBE_URL, ...script] : script, {
      cwd: ROOT,
      stdio: probed ? ["ignore", "pipe", "inherit", "ipc"] : ["ignore", "pipe", "inherit"]
    })
  )
  const pid = child.pid
  const stdout = child.stdout
  if (pid === undefined || stdout === null) throw new Error(`${spec.file}: could not start`)
  const lines = createInterface({ input: stdout })
  const port = await new Promise<number>((resolve, reject) => {
    let ready = false
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`${spec.file}: no "listening PORT" line within ${STARTUP_TIMEOUT_MS / 1000} s`))
    }, STARTUP_TIMEOUT_MS)
    lines.on("line", (line) => {
      const match = ready ? null : /^listening (\d+)$/.exec(line.trim())
      if (match !== null) {
        ready = true
        clearTimeout(timer)
        resolve(Number(match[1]))
      } else {
        process.stderr.write(`[${spec.name}] ${line}\n`)
      }
    })
    child.once("exit", (code, signal) => {
      clearTimeout(timer)
      if (!ready) reject(new Error(`${spec.file} exited before listening (code ${code}, signal ${signal})`))
    })
  })
  return { spec, child, pid, port, probed }
}

let probeRequests = 0

/** Asks the server's probe for its cumulative CPU and allocation counters. */
const probeSnapshot = (server: RunningServer): Promise<ProbeSnapshot> =>
  new Promise((resolve, reject) => {
    if (!server.probed) {
      reject(new Error(`${server.spec.file} was started without the probe`))
      return
    }
    const id = ++probeRequests
    const child = server.child
    const done = (): void => {
      clearTimeout(timer)
      child.off("message", onMessage)
      child.off("exit", onExit)
    }
    const fail = (err: Error): void => {
      done()
      reject(err)
    }
    const onMessage = (message: unknown): void => {
      if (isProbeSnapshot(message) && message.id === id) {
        done()
        resolve(message)
      }
    }
    const onExit = (): void => fail(new Error(`${server.spec.file} exited while asked for a probe snapshot`))
    const timer = setTimeout(
      () => fail(new Error(`${server.spec.file}: no probe snapshot within ${PROBE_TIMEOUT_MS / 1000} s`)),
      PROBE_TIMEOUT_MS
    )
    child.on("message", onMessage)
    child.once("exit", onExit)
    child.send({ probe: "request", id }, (err) => {
      if (err !== null) fail(err)
    })
  })

/** SIGTERM, then wait; SIGKILL if it does not exit in time. Returns a problem description or null. */
async function stopServer(server: RunningServer): Promise<string | null> {
  server.child.kill("SIGTERM")
  const status = await exitedWithin(server.child, SHUTDOWN_TIMEOUT_MS)
  if (status === undefined) {
    server.child.kill("SIGKILL")
    await exited(server.child)
    return `${server.spec.file} did not exit within ${SHUTDOWN_TIMEOUT_MS / 1000} s of SIGTERM (killed)`
  }
  if (status.code !== 0) {
    return `${server.spec.file} exited with code ${status.code}${status.signal === null ? "" : ` (signal ${status.signal})`} after SIGTERM, expected 0`
  }
  return null
}

// ---------------------------------------------------------------------------
// /proc readings

/** VmRSS of a process in bytes, or undefined if it cannot be read. */
const rssBytes = (pid: number): number | undefined => {
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "latin1"))
    return match === null ? undefined : Number(match[1]) * 1024
  } catch {
    return undefined
  }
}

/** Soft "Max open files" limit of a process (pid or "self"), or undefined. */
const fdLimit = (pid: number | "self"): number | undefined => {
  try {
    const match = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync(`/proc/${pid}/limits`, "latin1"))
    if (match === null) return undefined
    return match[1] === "unlimited" ? Number.POSITIVE_INFINITY : Number(match[1])
  } catch {
    return undefined
  }
}

const median = (values: ReadonlyArray<number>): number => {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b)
  if (sorted.length === 0) return Number.NaN
  const mid = Math.floor(sorted.length / 2)
  const hi = sorted[mid] ?? Number.NaN
  const lo = sorted[mid - 1] ?? hi
  return sorted.length % 2 === 1 ? hi : (lo + hi) / 2
}

/** Median of `count` RSS readings taken `gapMs` apart. */
const settledRss = async (pid: number, count = 5, gapMs = 100): Promise<number> => {
  const samples: Array<number> = []
  for (let i = 0; i < count; i++) {
    if (i > 0) await sleep(gapMs)
    samples.push(rssBytes(pid) ?? Number.NaN)
  }
  return median(samples)
}

// ---------------------------------------------------------------------------
// Load generator runs

const toLoadResult = (value: unknown): LoadResult => {
  if (
    typeof value !== "object" ||
    value === null ||
    !("delivered" in value) ||
    typeof value.delivered !== "number" ||
    !("errors" in value) ||
    typeof value.errors !== "number" ||
    !("aborted" in value) ||
    typeof value.aborted !== "number" ||
    !("connections" in value) ||
    typeof value.connections !== "number" ||
    !("elapsedSec" in value) ||
    typeof value.elapsedSec !== "number" ||
    !("msgsPerSec" in value) ||
    typeof value.msgsPerSec !== "number" ||
    !("mibPerSec" in value) ||
    typeof value.mibPerSec !== "number" ||
    !("timedOut" in value) ||
    typeof value.timedOut !== "boolean" ||
    !("firstError" in value) ||
    (value.firstError !== null && typeof value.firstError !== "string")
  ) {
    throw new Error(`loadgen: unexpected result ${JSON.stringify(value)}`)
  }
  return {
    delivered: value.delivered,
    errors: value.errors,
    aborted: value.aborted,
    connections: value.connections,
    elapsedSec: value.elapsedSec,
    msgsPerSec: value.msgsPerSec,
    mibPerSec: value.mibPerSec,
    timedOut: value.timedOut,
    firstError: value.firstError
  }
}

/** Runs bench/loadgen.ts as a child process against 127.0.0.1:port. */
async function loadgen(port: number, load: Omit<LoadOptions, "port">): Promise<LoadResult> {
  const args = [
    LOADGEN,
    "--json",
    "--port",
    String(port),
    "--size",
    String(load.messageSize),
    "--messages",
    String(load.messages),
    "--parallel",
    String(load.parallel),
    "--time",
    String(load.timeLimitSec),
    ...(load.reuse ? ["--reuse"] : [])
  ]
  const child = track(spawn(process.execPath, args, { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] }))
  let output = ""
  child.stdout?.setEncoding("utf8")
  child.stdout?.on("data", (chunk: string) => {
    output += chunk
  })
  // the loadgen stops itself at its time limit; this is only a backstop
  const status = await exitedWithin(child, (load.timeLimitSec + 30) * 1000)
  if (status === undefined) {
    child.kill("SIGKILL")
    await exited(child)
    throw new Error("loadgen did not stop by itself (killed)")
  }
  const last = output.trim().split("\n").pop() ?? ""
  if (last === "") throw new Error(`loadgen exited with code ${status.code} and no result`)
  const parsed: unknown = JSON.parse(last)
  return toLoadResult(parsed)
}

// ---------------------------------------------------------------------------
// Measurements

/** A load run with the server's own costs over it. */
interface Measured {
  readonly result: LoadResult
  /** server CPU (user + system, all threads) over the window, µs */
  readonly cpuMicros: number
  /** bytes allocated on the server's JS heap over the window */
  readonly allocatedBytes: number
  readonly gcs: number
  readonly markCompacts: number
}

const perMessage = (total: number, r: LoadResult): number => (r.delivered > 0 ? total / r.delivered : Number.NaN)
const cpuPerMessage = (m: Measured): number => perMessage(m.cpuMicros, m.result)
const kibPerMessage = (m: Measured): number => perMessage(m.allocatedBytes, m.result) / KiB

/**
 * Pause before each snapshot: the first lets the previous load's sessions finish
 * closing on the server, the second bills the closing of this load's sessions
 * (part of the cost of its messages) to this window.
 */
const SETTLE_MS = 250

/** Runs one load against a probed server, with a probe snapshot on each side of it. */
async function measuredLoad(server: RunningServer, load: Omit<LoadOptions, "port">): Promise<Measured> {
  await sleep(SETTLE_MS)
  const before = await probeSnapshot(server)
  const result = await loadgen(server.port, load)
  await sleep(SETTLE_MS)
  const after = await probeSnapshot(server)
  return {
    result,
    cpuMicros: after.cpuMicros - before.cpuMicros,
    allocatedBytes: after.allocatedBytes - before.allocatedBytes,
    gcs: after.gcs - before.gcs,
    markCompacts: after.markCompacts - before.markCompacts
  }
}

const formatCosts = (m: Measured): string =>
  `server ${fmt(cpuPerMessage(m), 1)} µs CPU/msg, ${fmt(kibPerMessage(m), 2)} KiB allocated/msg ` +
  `(${m.gcs} GC pauses, ${m.markCompacts} full)`

const loadShape = (load: Omit<LoadOptions, "port">): string =>
  `${load.messageSize >= MiB ? `${load.messageSize / MiB} MB` : `${load.messageSize / KiB} KB`} x${load.parallel} ` +
  `${load.reuse ? "reused" : "new conn"}, ${load.messages} msgs`

/** A fresh server: every warm-up load, then every measured workload. */
async function throughputRound(
  spec: ServerSpec,
  plan: Plan,
  notes: Array<string>
): Promise<Map<string, Measured>> {
  const server = await startServer(spec, true)
  const results = new Map<string, Measured>()
  try {
    for (const [i, load] of plan.warmup.entries()) {
      const m = await measuredLoad(server, load)
      const r = m.result
      log(
        `  ${spec.name.padEnd(8)} warm-up ${i + 1}/${plan.warmup.length} (${loadShape(load)}): ` +
          `${fmt(r.msgsPerSec, 0)} msgs/s, ${fmt(cpuPerMessage(m), 1)} µs CPU/msg`
      )
      if (r.errors > 0) notes.push(`${spec.name} warmup: ${r.errors} errors (${r.firstError ?? "?"})`)
    }
    for (const w of plan.workloads) {
      const m = await measuredLoad(server, w.load)
      results.set(w.id, m)
      log(`  ${spec.name.padEnd(8)} ${w.id}: ${formatResult(m.result).replace("\n", "; ")}`)
      log(`  ${"".padEnd(8)} ${" ".repeat(w.id.length)}  ${formatCosts(m)}`)
    }
  } finally {
    const problem = await stopServer(server)
    if (problem !== null) notes.push(problem)
  }
  return results
}

interface IdleResult {
  readonly requested: number
  readonly opened: number
  readonly failed: number
  readonly rssBefore: number
  readonly rssAfter: number
  /** bytes per connection */
  readonly perConnection: number
}

/** Opens `count` sessions that have read the greeting and had EHLO answered, and leaves them idle. */
async function openIdle(
  port: number,
  count: number
): Promise<{ clients: Array<SmtpClient>; failed: number; firstError: string | null }> {
  const clients: Array<SmtpClient> = []
  let failed = 0
  let firstError: string | null = null
  const deadline = Date.now() + 60_000
  const BATCH = 100
  for (let start = 0; start < count && Date.now() < deadline; start += BATCH) {
    const batch = Array.from({ length: Math.min(BATCH, count - start) }, async () => {
      const client = new SmtpClient(port)
      clients.push(client)
      const watchdog = setTimeout(() => client.destroy(new Error("idle session setup timed out")), 15_000)
      try {
        await client.expect("greeting", 220)
        await client.command("EHLO idle.localhost", 250)
      } catch (err) {
        failed++
        firstError ??= err instanceof Error ? err.message : String(err)
        client.destroy()
      } finally {
        clearTimeout(watchdog)
      }
    })
    await Promise.all(batch)
  }
  return { clients: clients.filter((c) => !c.closed), failed, firstError }
}

async function idleRound(spec: ServerSpec, count: number, notes: Array<string>): Promise<IdleResult> {
  const server = await startServer(spec)
  try {
    const serverFds = fdLimit(server.pid)
    if (serverFds !== undefined && serverFds < count + 100) {
      notes.push(
        `per-process fd limit too low: ${spec.file} may open ${serverFds} files, ${count} idle connections need about ${count + 100}; ` +
          "sessions beyond the limit fail and are not counted (raise it in this shell with `ulimit -n 4096`)"
      )
    }
    // warm up the connection path so that lazy initialisation is not billed to the connections
    const warm = await openIdle(server.port, 20)
    for (const c of warm.clients) c.destroy()
    await sleep(500)
    const rssBefore = await settledRss(server.pid)
    const idle = await openIdle(server.port, count)
    if (idle.failed > 0) notes.push(`${spec.name} idle: ${idle.failed} of ${count} sessions failed (${idle.firstError ?? "?"})`)
    await sleep(1000)
    const rssAfter = await settledRss(server.pid)
    const opened = idle.clients.length
    for (const c of idle.clients) c.destroy()
    return {
      requested: count,
      opened,
      failed: idle.failed,
      rssBefore,
      rssAfter,
      perConnection: opened > 0 ? (rssAfter - rssBefore) / opened : Number.NaN
    }
  } finally {
    const problem = await stopServer(server)
    if (problem !== null) notes.push(problem)
  }
}

interface BigResult {
  readonly rssBefore: number
  readonly rssPeak: number
  readonly growth: number
  readonly samples: number
  readonly result: LoadResult
}

async function bigMessageRound(spec: ServerSpec, size: number, notes: Array<string>): Promise<BigResult> {
  const server = await startServer(spec)
  try {
    await loadgen(server.port, { messageSize: KiB, parallel: 2, reuse: true, messages: 50, timeLimitSec: 10 })
    await loadgen(server.port, { messageSize: MiB, parallel: 1, reuse: true, messages: 5, timeLimitSec: 10 })
    await sleep(500)
    const rssBefore = await settledRss(server.pid)
    let peak = rssBefore
    let samples = 0
    const sample = (): void => {
      const rss = rssBytes(server.pid)
      if (rss !== undefined) {
        samples++
        if (rss > peak) peak = rss
      }
    }
    const sampler = setInterval(sample, 50)
    let result: LoadResult
    try {
      result = await loadgen(server.port, { messageSize: size, parallel: 1, reuse: true, messages: 1, timeLimitSec: 120 })
    } finally {
      clearInterval(sampler)
    }
    sample()
    if (result.delivered !== 1) {
      notes.push(`${spec.name} 100 MB: not delivered (${result.firstError ?? (result.timedOut ? "time limit" : "?")})`)
    }
    return { rssBefore, rssPeak: peak, growth: peak - rssBefore, samples, result }
  } finally {
    const problem = await stopServer(server)
    if (problem !== null) notes.push(problem)
  }
}

// ---------------------------------------------------------------------------
// Report

const log = (line: string): void => {
  process.stdout.write(line + "\n")
}

const fmt = (value: number, digits: number): string => (Number.isFinite(value) ? value.toFixed(digits) : "n/a")

const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>): string =>
    "| " + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join(" | ") + " |"
  const rule = "|" + widths.map((w, i) => (i === 0 ? "-".repeat(w + 2) : "-".repeat(w + 1) + ":")).join("|") + "|"
  return [line(header), rule, ...rows.map(line)].join("\n")
}

const smtpServerVersion = (): string => {
  try {
    const text = readFileSync(path.join(ROOT, "node_modules", "smtp-server", "package.json"), "utf8")
    return /"version"\s*:\s*"([^"]+)"/.exec(text)?.[1] ?? "?"
  } catch {
    return "?"
  }
}

// ---------------------------------------------------------------------------
// Main

const main = async (): Promise<void> => {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean", default: false },
      rounds: { type: "string" },
      servers: { type: "string" },
      help: { type: "boolean", short: "h", default: false }
    },
    strict: true
  })
  const usage = "usage: node bench/run.ts [--quick] [--rounds N] [--servers raw,compose,effect,nometrics]"
  if (values.help) {
    log(usage)
    return
  }
  const base = values.quick ? QUICK : FULL
  let rounds = base.rounds
  if (values.rounds !== undefined) {
    rounds = Number(values.rounds)
    if (!Number.isInteger(rounds) || rounds < 1 || rounds > 50) {
      process.stderr.write(`--rounds must be an integer in 1..50\n${usage}\n`)
      process.exitCode = 2
      return
    }
  }
  const plan: Plan = { ...base, rounds }
  const notes: Array<string> = []
  const started = Date.now()

  const chosen = values.servers?.split(",")
  const servers = ALL_SERVERS.filter((s) => {
    if (chosen !== undefined && !chosen.includes(s.name)) return false
    if (existsSync(path.join(BENCH, s.file))) return true
    log(`bench/${s.file} not found: skipping the ${s.label} server (it is written together with the library).`)
    notes.push(`bench/${s.file} did not exist: ${s.name} was not measured`)
    return false
  })

  if (rssBytes(process.pid) === undefined) {
    notes.push("/proc/<pid>/status is not readable here: memory figures are n/a")
  }

  const ownFds = fdLimit("self") ?? Number.POSITIVE_INFINITY
  let idleCount = plan.idleConnections
  if (ownFds < idleCount + 100) {
    idleCount = Math.max(10, ownFds - 100)
    const msg =
      `per-process fd limit too low: run.ts may open ${ownFds} files, ${plan.idleConnections} idle connections need about ` +
      `${plan.idleConnections + 100}; measuring ${idleCount} connections instead (raise it in this shell with \`ulimit -n 4096\`)`
    log(msg)
    notes.push(msg)
  }

  log(
    `effect-smtp benchmark (${plan.quick ? "quick" : "full"}): ${plan.rounds} round(s), servers: ${servers.map((s) => s.name).join(", ")}`
  )

  // throughput: alternate the servers within every round, rotating the order each round
  const throughput = new Map<string, Map<string, Array<Measured>>>()
  for (const s of servers) throughput.set(s.name, new Map(plan.workloads.map((w) => [w.id, []])))
  const failedRun = (what: string, err: unknown): void => {
    const msg = `${what} failed: ${err instanceof Error ? err.message : String(err)}`
    log(`  ${msg}`)
    notes.push(msg)
  }
  const idle = new Map<string, Array<IdleResult>>(servers.map((s) => [s.name, []]))
  const big = new Map<string, Array<BigResult>>(servers.map((s) => [s.name, []]))
  const rotate = <T>(xs: ReadonlyArray<T>, by: number): Array<T> => xs.map((_, i) => xs[(i + by) % xs.length]).filter((x) => x !== undefined)

  for (let round = 0; round < plan.rounds; round++) {
    const order = rotate(servers, round)
    log(`\nround ${round + 1}/${plan.rounds}: throughput (${order.map((s) => s.name).join(", ")})`)
    for (const s of order) {
      try {
        const results = await throughputRound(s, plan, notes)
        for (const [id, r] of results) throughput.get(s.name)?.get(id)?.push(r)
      } catch (err) {
        failedRun(`${s.name} throughput, round ${round + 1}`, err)
      }
    }
    log(`round ${round + 1}/${plan.rounds}: memory, ${idleCount} idle connections`)
    for (const s of order) {
      let r: IdleResult
      try {
        r = await idleRound(s, idleCount, notes)
      } catch (err) {
        failedRun(`${s.name} idle connections, round ${round + 1}`, err)
        continue
      }
      idle.get(s.name)?.push(r)
      log(
        `  ${s.name.padEnd(8)} ${r.opened} idle sessions: RSS ${fmt(r.rssBefore / MiB, 1)} -> ${fmt(r.rssAfter / MiB, 1)} MiB, ` +
          `${fmt(r.perConnection / KiB, 1)} KiB/connection`
      )
    }
    log(`round ${round + 1}/${plan.rounds}: memory, one ${plan.bigMessageSize / MiB} MB message`)
    for (const s of order) {
      let r: BigResult
      try {
        r = await bigMessageRound(s, plan.bigMessageSize, notes)
      } catch (err) {
        failedRun(`${s.name} ${plan.bigMessageSize / MiB} MB message, round ${round + 1}`, err)
        continue
      }
      big.get(s.name)?.push(r)
      log(
        `  ${s.name.padEnd(8)} RSS ${fmt(r.rssBefore / MiB, 1)} MiB before, peak ${fmt(r.rssPeak / MiB, 1)} MiB, ` +
          `growth ${fmt(r.growth / MiB, 1)} MiB (${r.samples} samples, transfer ${fmt(r.result.elapsedSec, 2)} s, ` +
          `${fmt(r.result.mibPerSec, 0)} MiB/s)`
      )
    }
  }

  // -------------------------------------------------------------------------
  // Tables

  const names = servers.map((s) => s.name)
  const others = names.filter((n) => n !== "raw")
  const ratioHeaders = names.includes("raw") ? others.map((n) => `${n}/raw`) : []
  const header = ["", ...names, ...ratioHeaders]

  const medianOf = (values: ReadonlyArray<number>): number => median(values)
  const ratios = (byName: Map<string, number>): Array<string> =>
    names.includes("raw") ? others.map((n) => fmt((byName.get(n) ?? Number.NaN) / (byName.get("raw") ?? Number.NaN), 2)) : []

  const flagged = (results: ReadonlyArray<LoadResult>): string => {
    const errs = results.reduce((sum, r) => sum + r.errors, 0)
    const timed = results.some((r) => r.timedOut)
    return (errs > 0 ? " E" : "") + (timed ? " T" : "")
  }

  const runsOf = (n: string, w: Workload): ReadonlyArray<Measured> => throughput.get(n)?.get(w.id) ?? []
  const medianBy = (w: Workload, f: (m: Measured) => number): Map<string, number> =>
    new Map(names.map((n) => [n, medianOf(runsOf(n, w).map(f))]))

  const throughputHeader = [
    "workload (medians)",
    ...names.map((n) => `${n} msg/s`),
    ...ratioHeaders.map((h) => `${h} msg/s`),
    ...names.map((n) => `${n} CPU µs/msg`),
    ...names.map((n) => `${n} KiB/msg`)
  ]
  const cpuMedians = new Map(plan.workloads.map((w) => [w.id, medianBy(w, cpuPerMessage)]))
  const throughputRows = plan.workloads.map((w) => {
    const rate = medianBy(w, (m) => m.result.msgsPerSec)
    const cpu = cpuMedians.get(w.id) ?? new Map<string, number>()
    const kib = medianBy(w, kibPerMessage)
    return [
      w.short,
      ...names.map((n) => fmt(rate.get(n) ?? Number.NaN, 0) + flagged(runsOf(n, w).map((m) => m.result))),
      ...ratios(rate),
      ...names.map((n) => fmt(cpu.get(n) ?? Number.NaN, 1)),
      ...names.map((n) => fmt(kib.get(n) ?? Number.NaN, 2))
    ]
  })
  // the server's own cost per message over raw smtp-server's, from the medians above
  const cpuOverRaw = names.includes("raw")
    ? others.map(
        (n) =>
          `${n} CPU − raw CPU, µs/msg: ` +
          plan.workloads
            .map((w) => {
              const cpu = cpuMedians.get(w.id)
              return `${w.id} ${fmt((cpu?.get(n) ?? Number.NaN) - (cpu?.get("raw") ?? Number.NaN), 1)}`
            })
            .join(", ")
      )
    : []

  const idleMedians = new Map(names.map((n) => [n, medianOf((idle.get(n) ?? []).map((r) => r.perConnection / KiB))]))
  const bigMedians = new Map(names.map((n) => [n, medianOf((big.get(n) ?? []).map((r) => r.growth / MiB))]))
  const bigRate = new Map(names.map((n) => [n, medianOf((big.get(n) ?? []).map((r) => r.result.mibPerSec))]))
  const memoryRows = [
    [`RSS per idle connection, KiB (${idleCount} sessions after EHLO)`, ...names.map((n) => fmt(idleMedians.get(n) ?? Number.NaN, 1)), ...ratios(idleMedians)],
    [`RSS growth during one ${plan.bigMessageSize / MiB} MB DATA, MiB (peak - before)`, ...names.map((n) => fmt(bigMedians.get(n) ?? Number.NaN, 1)), ...ratios(bigMedians)],
    [`${plan.bigMessageSize / MiB} MB DATA transfer rate, MiB/s`, ...names.map((n) => fmt(bigRate.get(n) ?? Number.NaN, 0)), ...ratios(bigRate)]
  ]

  const detailRows: Array<Array<string>> = []
  for (const w of plan.workloads) {
    for (const n of names) {
      const runs = runsOf(n, w)
      detailRows.push([
        `${w.id} ${n}`,
        runs.map((m) => fmt(m.result.msgsPerSec, 0)).join(", "),
        runs.map((m) => fmt(cpuPerMessage(m), 1)).join(", "),
        runs.map((m) => fmt(kibPerMessage(m), 2)).join(", "),
        String(runs.reduce((s, m) => s + m.result.delivered, 0)),
        String(runs.reduce((s, m) => s + m.result.errors, 0)),
        runs.map((m) => fmt(m.result.elapsedSec, 2)).join(", ")
      ])
    }
  }
  for (const n of names) {
    detailRows.push([`idle ${n} (KiB/conn)`, (idle.get(n) ?? []).map((r) => fmt(r.perConnection / KiB, 1)).join(", "), "", "", "", "", ""])
  }
  for (const n of names) {
    detailRows.push([`100 MB ${n} (MiB growth)`, (big.get(n) ?? []).map((r) => fmt(r.growth / MiB, 1)).join(", "), "", "", "", "", (big.get(n) ?? []).map((r) => fmt(r.result.elapsedSec, 2)).join(", ")])
  }

  const cpus = os.cpus()
  const env = [
    `- date: ${new Date().toISOString()}`,
    `- mode: ${plan.quick ? `--quick (${plan.rounds} round(s), small counts: a smoke test, not a measurement)` : `full, ${plan.rounds} rounds, medians`}; ` +
      "servers alternate within each round, order rotated per round; each round starts every server afresh and warms it up " +
      `(${plan.warmup.map(loadShape).join("; ")}) before its measured workloads`,
    `- node ${process.version}, smtp-server ${smtpServerVersion()}, ${os.type()} ${os.release()}`,
    `- CPU: ${cpus.length} x ${cpus[0]?.model ?? "?"}; memory ${fmt(os.totalmem() / 1024 ** 3, 1)} GiB`,
    `- load generator: bench/loadgen.ts in its own process on the same machine (127.0.0.1), no PIPELINING, every reply checked`,
    `- fd limit (soft) of the benchmark process: ${fdLimit("self") ?? "?"}`,
    `- total benchmark time: ${fmt((Date.now() - started) / 1000, 0)} s`
  ]
  const workloadsText = plan.workloads.map(
    (w) =>
      `- ${w.id}: ${w.label}: at most ${w.load.messages} messages or ${w.load.timeLimitSec} s, ${w.load.messageSize} bytes each`
  )

  const throughputTable = table(throughputHeader, throughputRows)
  const memoryTable = table(["memory (median)", ...header.slice(1)], memoryRows)
  const detailTable = table(
    ["run", "msgs/s or figure per round", "CPU µs/msg", "KiB/msg", "delivered", "errors", "elapsed s per round"],
    detailRows
  )

  const counted = new Map<string, number>()
  for (const n of notes) counted.set(n, (counted.get(n) ?? 0) + 1)
  const uniqueNotes = [...counted].map(([n, times]) => (times > 1 ? `${n} (x${times})` : n))
  const allNotes = [
    ...uniqueNotes,
    "E = a run had errors, T = a run hit its time limit (msgs/s is then over the time limit)"
  ]

  log("\n" + throughputTable + "\n" + cpuOverRaw.join("\n") + "\n\n" + memoryTable + "\n")
  if (uniqueNotes.length > 0) log("notes:\n" + uniqueNotes.map((n) => `- ${n}`).join("\n"))

  const markdown = [
    "# effect-smtp benchmark: latest results",
    "",
    "Generated by `node bench/run.ts" + (plan.quick ? " --quick" : "") + "`.",
    "",
    ...env,
    "",
    "Workloads:",
    "",
    ...workloadsText,
    "",
    "## Throughput and server cost per message",
    "",
    throughputTable,
    "",
    ...cpuOverRaw.map((line) => `${line}  `),
    "",
    "msg/s: messages accepted per second as the load generator saw them (it shares the machine's CPUs with the server). " +
      "CPU µs/msg: the server process's user + system CPU time, all threads (GC and JIT threads included: process.cpuUsage() " +
      "in the server, i.e. getrusage, which bench/probe-check.ts checks against /proc/<pid>/stat), over the measured window " +
      `(from ${SETTLE_MS} ms before the load to ${SETTLE_MS} ms after it, so closing the sessions is included), divided by the messages accepted. ` +
      "KiB/msg: bytes allocated on the server's JS heap over the same window (bench/probe.ts: change of the used heap plus " +
      "what every GC freed, from v8.GCProfiler) per message accepted; Buffer contents live outside the JS heap and are not " +
      "counted, and a window is good to about ±1 MiB.",
    "",
    "## Memory",
    "",
    memoryTable,
    "",
    "RSS is VmRSS of the server process from /proc. Per idle connection: (RSS with the sessions open - RSS before) / sessions, " +
      "each session has received the greeting and had its EHLO answered. 100 MB: peak of 50 ms samples during the transfer minus RSS before it.",
    "",
    "## Per round",
    "",
    detailTable,
    "",
    "## Notes",
    "",
    ...allNotes.map((n) => `- ${n}`),
    ""
  ].join("\n")
  writeFileSync(RESULTS, markdown)
  log(`\nwritten ${path.relative(ROOT, RESULTS)}`)
}

await main()
