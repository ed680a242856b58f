/**
 * Soak test: 200 concurrent clients against bench/soak-server.ts on
 * 127.0.0.1 for a bounded time (60 s by default), mixing normal mail with
 * clients that disconnect mid-DATA, try SMTP smuggling, send the message
 * before the 354 (unauthorised pipelining) or send junk commands. It checks
 * that the server stays up, that its memory stays bounded,
 * and that every message that got 250 was stored exactly once (and nothing
 * that was smuggled or rejected was). Usage: node bench/soak.ts [SECONDS] [CLIENTS]
 */
import { spawn } from "node:child_process"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { SmtpClient } from "./loadgen.ts"

const seconds = Number(process.argv[2] ?? "60")
const clients = Number(process.argv[3] ?? "200")

const rssMiB = (pid: number): number => {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
  return match === null ? 0 : Number(match[1]) / 1024
}

const report = path.join(mkdtempSync(path.join(tmpdir(), "effect-smtp-soak-")), "stored.json")
const child = spawn(process.execPath, [new URL("./soak-server.ts", import.meta.url).pathname, "0", report], {
  stdio: ["ignore", "pipe", "inherit"]
})
let output = ""
child.stdout.on("data", (chunk: Buffer) => output += chunk.toString())
const port = await new Promise<number>((resolve, reject) => {
  const poll = setInterval(() => {
    const match = /listening (\d+)/.exec(output)
    if (match !== null) {
      clearInterval(poll)
      resolve(Number(match[1]))
    }
  }, 20)
  child.once("exit", (code) => reject(new Error(`server exited with ${code}`)))
})
const pid = child.pid ?? 0

const stats = { connections: 0, accepted: 0, rejected: 0, hostile: 0, dropped: 0, errors: 0 }
const acknowledged = new Set<string>()
let counter = 0
const deadline = Date.now() + seconds * 1000
const rss = { start: rssMiB(pid), peak: 0, end: 0 }
const sampler = setInterval(() => rss.peak = Math.max(rss.peak, rssMiB(pid)), 250)

const line = "soak ".repeat(15) + "\r\n"
const body = (id: string, size: number) => `X-Soak-Id: ${id}\r\nSubject: soak\r\n\r\n${line.repeat(1 + size / line.length)}.\r\n`

/** One client session with a randomly chosen behaviour. */
const session = async (): Promise<void> => {
  const client = new SmtpClient(port)
  stats.connections++
  try {
    await client.expect("greeting", 220)
    await client.command("EHLO soak.test", 250)
    const roll = Math.random()
    if (roll >= 0.2 && roll < 0.25) {
      // Sends the message without waiting for the 354: refused before any of it is read.
      client.socket.write("MAIL FROM:<soak@sender.test>\r\nRCPT TO:<box@example.test>\r\nDATA\r\nX-Soak-Id: pipelined\r\n\r\n.\r\n")
      await client.expect("pipelined MAIL", 250)
      await client.expect("pipelined RCPT", 250)
      await client.expect("pipelined DATA", 554)
      stats.hostile++
      return client.destroy()
    }
    for (let n = 0; n < 5 && Date.now() < deadline; n++) {
      const id = `m${++counter}`
      await client.command("MAIL FROM:<soak@sender.test>", 250)
      await client.command("RCPT TO:<box@example.test>", 250)
      await client.command("DATA", 354)
      if (roll < 0.1) {
        // Goes away in the middle of the message.
        client.socket.write(body(id, 4000).slice(0, 1000))
        stats.dropped++
        return client.destroy()
      }
      if (roll < 0.2) {
        // Smuggles a second message behind a bare LF.
        client.socket.write(`Subject: x\r\n\r\nhi\n.\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<v@x.test>\r\nDATA\r\nX-Soak-Id: smuggled\r\n\r\n.\r\n`)
        await client.expect("smuggled", 550)
        stats.hostile++
        continue
      }
      client.socket.write(body(id, Math.floor(Math.random() * 20_000)))
      const reply = await client.reply()
      if (reply.code === 250) {
        acknowledged.add(id)
        stats.accepted++
      } else {
        stats.rejected++
      }
      if (roll > 0.9) {
        // Junk until the server hangs up, then BDAT on a fresh connection would be refused too.
        for (let i = 0; i < 120 && !client.closed; i++) client.socket.write("NOOP\r\n")
        stats.hostile++
        return client.destroy()
      }
    }
    await client.command("QUIT", 221)
  } catch {
    if (!client.closed) stats.errors++
    client.destroy()
  }
}

const worker = async (): Promise<void> => {
  while (Date.now() < deadline) await session()
}
await Promise.all(Array.from({ length: clients }, worker))
clearInterval(sampler)
rss.end = rssMiB(pid)
const alive = child.exitCode === null
child.kill("SIGTERM")
const exitCode = await new Promise<number | null>((resolve) => child.once("exit", resolve))
const stored: ReadonlyArray<string> = JSON.parse(readFileSync(report, "utf8"))
const counts = new Map<string, number>()
for (const id of stored) counts.set(id, (counts.get(id) ?? 0) + 1)
const lost = [...acknowledged].filter((id) => counts.get(id) !== 1)
const duplicated = [...counts].filter(([, n]) => n > 1).length
const smuggled = (counts.get("smuggled") ?? 0) + (counts.get("pipelined") ?? 0)
console.log(JSON.stringify({ seconds, clients, ...stats, stored: stored.length, lost: lost.length, duplicated, smuggled, alive, exitCode, rssMiB: { start: Math.round(rss.start), peak: Math.round(rss.peak), end: Math.round(rss.end) } }))
process.exitCode = alive && lost.length === 0 && duplicated === 0 && smuggled === 0 ? 0 : 1
