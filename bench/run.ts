/**
 * The effect-smtp benchmark: the Effect layer against raw smtp-server and a
 * Koa-compose-style promise middleware layer, on the same machine, in the same run.
 *
 *   node bench/run.ts            full run: 3 alternating rounds, medians
 *   node bench/run.ts --quick    smoke test: one round, small counts
 *
 * Servers (each a child process started with port 0, announcing `listening PORT`,
 * stopped with SIGTERM): bench/baseline-raw.ts, bench/baseline-compose.ts and
 * bench/server.ts (the Effect server; skipped if the file does not exist yet).
 * Load comes from bench/loadgen.ts, run as its own process so that it has its
 * own event loop and this process stays free to sample the server's RSS.
 * Everything listens on and connects to 127.0.0.1 only, and every load run is
 * bounded in messages and in time.
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

const BENCH = import.meta.dirname
const ROOT = path.dirname(BENCH)
const LOADGEN = path.join(BENCH, "loadgen.ts")
const RESULTS = path.join(BENCH, "results-latest.md")

// ---------------------------------------------------------------------------
// Configuration

interface ServerSpec {
  readonly name: string
  readonly label: string
  readonly file: string
}

interface Workload {
  readonly id: string
  readonly label: string
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
  { name: "effect", label: "effect-smtp", file: "server.ts" }
]

const workload = (
  id: string,
  label: string,
  messageSize: number,
  parallel: number,
  reuse: boolean,
  messages: number,
  timeLimitSec: number
): Workload => ({ id, label, load: { messageSize, parallel, reuse, messages, timeLimitSec } })

const FULL: Plan = {
  quick: false,
  rounds: 3,
  warmup: [
    { messageSize: KiB, parallel: 20, reuse: true, messages: 3000, timeLimitSec: 10 },
    { messageSize: KiB, parallel: 50, reuse: false, messages: 500, timeLimitSec: 10 },
    { messageSize: MiB, parallel: 4, reuse: true, messages: 20, timeLimitSec: 10 }
  ],
  workloads: [
    workload("w1", "1 KB, 20 sessions, reused connections", KiB, 20, true, 20_000, 10),
    workload("w2", "1 KB, 200 sessions, one connection per message", KiB, 200, false, 4_000, 10),
    workload("w3", "1 MB, 4 sessions, reused connections", MiB, 4, true, 500, 15)
  ],
  idleConnections: 1000,
  bigMessageSize: 100 * MiB
}

const QUICK: Plan = {
  quick: true,
  rounds: 1,
  warmup: [{ messageSize: KiB, parallel: 10, reuse: true, messages: 300, timeLimitSec: 5 }],
  workloads: [
    workload("w1", "1 KB, 20 sessions, reused connections", KiB, 20, true, 2_000, 5),
    workload("w2", "1 KB, 200 sessions, one connection per message", KiB, 200, false, 600, 5),
    workload("w3", "1 MB, 4 sessions, reused connections", MiB, 4, true, 40, 5)
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
}

const STARTUP_TIMEOUT_MS = 60_000
const SHUTDOWN_TIMEOUT_MS = 15_000

async function startServer(spec: ServerSpec): Promise<RunningServer> {
  const child = track(
    spawn(process.execPath, [path.join(BENCH, spec.file), "0"], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "inherit"]
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
  return { spec, child, pid, port }
}

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

async function throughputRound(
  spec: ServerSpec,
  plan: Plan,
  notes: Array<string>
): Promise<Map<string, LoadResult>> {
  const server = await startServer(spec)
  const results = new Map<string, LoadResult>()
  try {
    for (const warm of plan.warmup) {
      const r = await loadgen(server.port, warm)
      if (r.errors > 0) notes.push(`${spec.name} warmup: ${r.errors} errors (${r.firstError ?? "?"})`)
    }
    for (const w of plan.workloads) {
      const r = await loadgen(server.port, w.load)
      results.set(w.id, r)
      log(`  ${spec.name.padEnd(8)} ${w.id}: ${formatResult(r).replace("\n", "; ")}`)
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
    options: { quick: { type: "boolean", default: false }, help: { type: "boolean", short: "h", default: false } },
    strict: true
  })
  if (values.help) {
    log("usage: node bench/run.ts [--quick]")
    return
  }
  const plan = values.quick ? QUICK : FULL
  const notes: Array<string> = []
  const started = Date.now()

  const servers = ALL_SERVERS.filter((s) => {
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
  const throughput = new Map<string, Map<string, Array<LoadResult>>>()
  for (const s of servers) throughput.set(s.name, new Map(plan.workloads.map((w) => [w.id, []])))
  const idle = new Map<string, Array<IdleResult>>(servers.map((s) => [s.name, []]))
  const big = new Map<string, Array<BigResult>>(servers.map((s) => [s.name, []]))
  const rotate = <T>(xs: ReadonlyArray<T>, by: number): Array<T> => xs.map((_, i) => xs[(i + by) % xs.length]).filter((x) => x !== undefined)

  for (let round = 0; round < plan.rounds; round++) {
    const order = rotate(servers, round)
    log(`\nround ${round + 1}/${plan.rounds}: throughput (${order.map((s) => s.name).join(", ")})`)
    for (const s of order) {
      const results = await throughputRound(s, plan, notes)
      for (const [id, r] of results) throughput.get(s.name)?.get(id)?.push(r)
    }
    log(`round ${round + 1}/${plan.rounds}: memory, ${idleCount} idle connections`)
    for (const s of order) {
      const r = await idleRound(s, idleCount, notes)
      idle.get(s.name)?.push(r)
      log(
        `  ${s.name.padEnd(8)} ${r.opened} idle sessions: RSS ${fmt(r.rssBefore / MiB, 1)} -> ${fmt(r.rssAfter / MiB, 1)} MiB, ` +
          `${fmt(r.perConnection / KiB, 1)} KiB/connection`
      )
    }
    log(`round ${round + 1}/${plan.rounds}: memory, one ${plan.bigMessageSize / MiB} MB message`)
    for (const s of order) {
      const r = await bigMessageRound(s, plan.bigMessageSize, notes)
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

  const throughputRows = plan.workloads.map((w) => {
    const medians = new Map<string, number>()
    const cells = names.map((n) => {
      const results = throughput.get(n)?.get(w.id) ?? []
      const m = medianOf(results.map((r) => r.msgsPerSec))
      medians.set(n, m)
      return fmt(m, 0) + flagged(results)
    })
    return [w.label, ...cells, ...ratios(medians)]
  })

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
      const results = throughput.get(n)?.get(w.id) ?? []
      detailRows.push([
        `${w.id} ${n}`,
        results.map((r) => fmt(r.msgsPerSec, 0)).join(", "),
        String(results.reduce((s, r) => s + r.delivered, 0)),
        String(results.reduce((s, r) => s + r.errors, 0)),
        results.map((r) => fmt(r.elapsedSec, 2)).join(", ")
      ])
    }
  }
  for (const n of names) {
    detailRows.push([`idle ${n} (KiB/conn)`, (idle.get(n) ?? []).map((r) => fmt(r.perConnection / KiB, 1)).join(", "), "", "", ""])
  }
  for (const n of names) {
    detailRows.push([`100 MB ${n} (MiB growth)`, (big.get(n) ?? []).map((r) => fmt(r.growth / MiB, 1)).join(", "), "", "", (big.get(n) ?? []).map((r) => fmt(r.result.elapsedSec, 2)).join(", ")])
  }

  const cpus = os.cpus()
  const env = [
    `- date: ${new Date().toISOString()}`,
    `- mode: ${plan.quick ? "--quick (one round, small counts: a smoke test, not a measurement)" : `full, ${plan.rounds} rounds, medians; servers alternate within each round, order rotated per round`}`,
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

  const throughputTable = table(["msgs/s (median)", ...header.slice(1)], throughputRows)
  const memoryTable = table(["memory (median)", ...header.slice(1)], memoryRows)
  const detailTable = table(["run", "msgs/s or figure per round", "delivered", "errors", "elapsed s per round"], detailRows)

  const counted = new Map<string, number>()
  for (const n of notes) counted.set(n, (counted.get(n) ?? 0) + 1)
  const uniqueNotes = [...counted].map(([n, times]) => (times > 1 ? `${n} (x${times})` : n))
  const allNotes = [
    ...uniqueNotes,
    "E = a run had errors, T = a run hit its time limit (msgs/s is then over the time limit)"
  ]

  log("\n" + throughputTable + "\n\n" + memoryTable + "\n")
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
    "## Throughput",
    "",
    throughputTable,
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
