#!/usr/bin/env node
/**
 * The `effect-smtp` command: the receiving mail server of `MailServer`.
 *
 * Every setting comes from an environment variable (`effect-smtp --help` lists
 * them); an invalid one stops start-up with one line naming it and exit code
 * 1. SIGTERM or SIGINT finish the messages in flight and exit 0.
 *
 * `effect-smtp hash-password` reads a password from standard input (its first
 * line; typed at a terminal, it is not shown) and prints the hash
 * `SMTP_AUTH_USERS` and users files take.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Redacted from "effect/Redacted"
import { hashPassword } from "../services/Users.ts"
import * as MailServer from "./MailServer.ts"

const args = process.argv.slice(2)
if (args.length === 1 && (args[0] === "--help" || args[0] === "-h")) {
  console.log(MailServer.help())
} else if (args.length === 1 && args[0] === "hash-password") {
  printHash()
} else if (args.length > 0) {
  console.error(`effect-smtp: unknown argument ${JSON.stringify(args[0])}; settings come from environment variables (effect-smtp --help)`)
  process.exitCode = 1
} else {
  MailServer.main.pipe(
    Effect.scoped,
    Effect.tapError((error) => Console.error(`effect-smtp: ${error.message}`)),
    (program) =>
      NodeRuntime.runMain(program, {
        disableErrorReporting: true,
        // A signal is the normal way to stop the server: exit 0 once the messages in flight are done.
        teardown: (exit, onExit) => onExit(Exit.isSuccess(exit) || Cause.hasInterruptsOnly(exit.cause) ? 0 : 1)
      })
  )
}

/** The first line of standard input; from a terminal, read without echo. */
async function readPassword(): Promise<string> {
  const input = process.stdin
  // Whole characters, however the bytes of one fall across chunks.
  input.setEncoding("utf8")
  if (!input.isTTY) {
    let text = ""
    for await (const chunk of input) {
      text += String(chunk)
      if (text.includes("\n")) break
    }
    return text.split(/\r?\n/)[0] ?? ""
  }
  process.stderr.write("Password: ")
  input.setRawMode(true)
  let typed = ""
  try {
    for await (const chunk of input) {
      for (const char of String(chunk)) {
        // Enter, or Ctrl-D (end of input).
        if (char === "\r" || char === "\n" || char === "\u0004") return typed
        if (char === "\u0003") throw new Error("interrupted")
        typed = char === "\u007f" || char === "\b" ? typed.slice(0, -1) : typed + char
      }
    }
    return typed
  } finally {
    input.setRawMode(false)
    input.pause()
    process.stderr.write("\n")
  }
}

async function printHash() {
  const password = await readPassword().catch(() => "")
  if (password === "") {
    console.error("effect-smtp hash-password: no password given")
    process.exitCode = 1
    return
  }
  const exit = await Effect.runPromiseExit(hashPassword(Redacted.make(password)))
  if (Exit.isSuccess(exit)) console.log(exit.value)
  else {
    console.error(`effect-smtp hash-password: ${Cause.pretty(exit.cause)}`)
    process.exitCode = 1
  }
}
