/**
 * The package as a user installs it. `npm pack` builds dist/ and makes the
 * tarball. The tarball is installed into a fresh project under the system's
 * temporary directory, outside the repository, next to effect,
 * @effect/platform-node, the usual dev tools and Node at the engines floor
 * (the npm package `node`). The project copies the README's examples,
 * type-checks them with stock settings and runs the app with plain Node
 * (Node never strips types under node_modules, so the library loads from
 * dist/). It also runs the testing example with its own vitest and runs the
 * `effect-smtp` command from node_modules/.bin.
 */
import { expect, layer } from "@effect/vitest"
import { Context, type Duration, Effect, Layer } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import nodemailer from "nodemailer"

const repo = fileURLToPath(new URL("..", import.meta.url))
const fixture = (name: string) => path.join(repo, "test", "fixtures", name)

const manifest = JSON.parse(readFileSync(path.join(repo, "package.json"), "utf8")) as {
  readonly engines: { readonly node: string }
  readonly devDependencies: Readonly<Record<string, string>>
}

/** The lowest Node the package claims (`>=22.19.0` → `22.19.0`): the consumer installs it as the npm package `node`. */
const floor = /^>=(\d+\.\d+\.\d+)$/.exec(manifest.engines.node)?.[1]
if (floor === undefined) throw new Error(`engines.node should read >=x.y.z, not ${manifest.engines.node}`)

/** The version range the repository itself uses, so that npm's cache (filled by `npm ci`) serves it. */
const range = (name: string) => {
  const found = manifest.devDependencies[name]
  if (found === undefined) throw new Error(`${name} is not a devDependency of the repository`)
  return found
}

// Processes

type Env = Readonly<Record<string, string | undefined>>

/** The environment of a user's shell: no variables of npm scripts (npm_config_local_prefix would point npm at this repository) or vitest workers. */
const userEnv: Env = Object.fromEntries(
  Object.entries(process.env).filter(([key]) => !/^(npm_|VITEST|INIT_CWD$|NODE$|NODE_ENV$|NODE_OPTIONS$|TEST$)/i.test(key))
)
/** PATH without the repository's node_modules/.bin (`npm test` puts it first). */
const systemPath = (process.env.PATH ?? "").split(path.delimiter).filter((dir) => dir !== "" && !path.resolve(dir).startsWith(repo))
const withPath = (...dirs: ReadonlyArray<string>): Env => ({ ...userEnv, PATH: [...dirs, ...systemPath].join(path.delimiter) })

interface Exited {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly output: string
}

interface Process {
  readonly child: ChildProcess
  /** stdout and stderr so far, interleaved. */
  readonly output: () => string
  readonly running: () => boolean
  readonly exited: Effect.Effect<Exited>
}

/**
 * Spawns a process in its own process group for the current scope. When the
 * scope closes, the group (npm's children too) is killed if it is still running.
 */
const launch = (command: string, args: ReadonlyArray<string>, options: { readonly cwd: string; readonly env: Env }) =>
  Effect.acquireRelease(
    Effect.sync((): Process => {
      const child = spawn(command, args, { cwd: options.cwd, env: options.env, stdio: ["ignore", "pipe", "pipe"], detached: true })
      let output = ""
      let exit: Exited | undefined
      child.stdout.on("data", (chunk: Buffer) => output += chunk.toString())
      child.stderr.on("data", (chunk: Buffer) => output += chunk.toString())
      const exited = new Promise<Exited>((resolve) => {
        child.once("error", (error) => resolve(exit = { code: null, signal: null, output: `${output}${error.message}` }))
        child.once("close", (code, signal) => resolve(exit = { code, signal, output }))
      })
      return { child, output: () => output, running: () => exit === undefined, exited: Effect.promise(() => exited) }
    }),
    (proc) =>
      Effect.sync(() => {
        if (proc.running() && proc.child.pid !== undefined) {
          try {
            process.kill(-proc.child.pid, "SIGKILL")
          } catch {
            // already gone
          }
        }
      })
  )

/** Runs a command to its end, at most `timeout`: its exit code and output. */
const run = (
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly env: Env; readonly timeout?: Duration.Input }
) =>
  Effect.scoped(Effect.gen(function*() {
    const proc = yield* launch(command, args, options)
    return yield* proc.exited.pipe(Effect.timeoutOrElse({
      duration: options.timeout ?? "1 minute",
      orElse: () => Effect.fail(new Error(`${command} ${args.join(" ")} did not finish in time:\n${proc.output()}`))
    }))
  }))

/** `run`, failing unless the command exits 0. */
const runOk = (...params: Parameters<typeof run>) =>
  run(...params).pipe(Effect.filterOrFail(
    (result) => result.code === 0,
    (result) => new Error(`${params[0]} ${params[1].join(" ")} exited with ${result.code ?? result.signal}:\n${result.output}`)
  ))

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
const accepts = (port: number) =>
  Effect.callback<boolean>((resume) => {
    const socket = net.connect(port, "127.0.0.1")
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed(true))
    })
    socket.once("error", () => resume(Effect.succeed(false)))
    return Effect.sync(() => socket.destroy())
  })

/** A port nothing listens on right now. */
const freePort = Effect.callback<number>((resume) => {
  const server = net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as net.AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

/**
 * Starts a server process for the current scope and waits (at most 30 seconds)
 * until it accepts connections: on `port` if given, else on the port it prints
 * (`listening on 127.0.0.1:<port>`).
 */
const serve = (
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly env: Env; readonly port?: number }
) =>
  Effect.gen(function*() {
    const proc = yield* launch(command, args, options)
    const ready = Effect.gen(function*() {
      while (true) {
        if (!proc.running()) return yield* Effect.fail(new Error(`${command} exited before accepting connections:\n${proc.output()}`))
        const printed = /listening on 127\.0\.0\.1:(\d+)/.exec(proc.output())?.[1]
        const port = options.port ?? (printed === undefined ? undefined : Number(printed))
        if (port !== undefined && (yield* accepts(port))) return port
        yield* Effect.sleep("100 millis")
      }
    })
    const port = yield* ready.pipe(Effect.timeoutOrElse({
      duration: "30 seconds",
      orElse: () => Effect.fail(new Error(`${command} did not accept connections in time:\n${proc.output()}`))
    }))
    return { ...proc, port }
  })

/** SIGTERM, then its exit (at most 20 seconds). */
const stop = (proc: Process) =>
  Effect.sync(() => proc.child.kill("SIGTERM")).pipe(
    Effect.andThen(proc.exited),
    Effect.timeoutOrElse({
      duration: "20 seconds",
      orElse: () => Effect.fail(new Error(`no exit after SIGTERM:\n${proc.output()}`))
    })
  )

/** Sends one message over STARTTLS (any certificate) and returns the server's reply to it. */
const sendMail = (port: number, to: string, subject: string) =>
  Effect.tryPromise(async () => {
    const transport = nodemailer.createTransport({
      host: "127.0.0.1",
      port,
      secure: false,
      ignoreTLS: false,
      requireTLS: true,
      tls: { rejectUnauthorized: false }
    })
    try {
      return (await transport.sendMail({ from: "bob@elsewhere.test", to, subject, text: "from the consumer test" })).response
    } finally {
      transport.close()
    }
  }).pipe(Effect.timeout("30 seconds"))

const tempDir = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(path.join(tmpdir(), prefix))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

// The consumer project

type Runtime = "Node 24" | "engines floor"

class Consumer extends Context.Service<Consumer, {
  /** The consumer project, with the tarball installed. */
  readonly dir: string
  /** `tar tzf` of the tarball. */
  readonly entries: ReadonlyArray<string>
  /** The consumer's binaries: tsc, vitest, effect-smtp, node (the engines floor). */
  readonly bin: (name: string) => string
  /** The node binary of a runtime, and an environment whose `node` on PATH is that one, with the consumer's bin next. */
  readonly runtime: (which: Runtime) => { readonly node: string; readonly version: string; readonly env: Env }
}>()("test/Consumer") {
  static readonly layer = Layer.effect(
    Consumer,
    Effect.gen(function*() {
      const root = yield* tempDir("effect-smtp-consumer-")
      const node24 = path.dirname(process.execPath)
      const npmEnv = withPath(node24)

      const packs = path.join(root, "pack")
      mkdirSync(packs)
      yield* runOk("npm", ["pack", "--pack-destination", packs], { cwd: repo, env: npmEnv, timeout: "3 minutes" })
      const [tarball, ...others] = readdirSync(packs)
      if (tarball === undefined || others.length > 0) return yield* Effect.fail(new Error(`npm pack made ${readdirSync(packs).join(", ")}`))
      const tarballPath = path.join(packs, tarball)
      const entries = (yield* runOk("tar", ["tzf", tarballPath], { cwd: root, env: npmEnv })).output.split("\n").filter((line) => line !== "")

      const dir = path.join(root, "app")
      mkdirSync(dir)
      writeFileSync(
        path.join(dir, "package.json"),
        JSON.stringify(
          {
            name: "effect-smtp-consumer",
            private: true,
            type: "module",
            dependencies: {
              "effect-smtp": `file:${tarballPath}`,
              effect: range("effect"),
              "@effect/platform-node": range("@effect/platform-node")
            },
            devDependencies: Object.fromEntries([
              ...["typescript", "vitest", "@effect/vitest", "@types/node", "nodemailer", "@types/nodemailer"].map((name) => [name, range(name)]),
              ["node", floor]
            ]),
            // The `node` package downloads its binary in a preinstall script.
            allowScripts: { node: true }
          },
          null,
          2
        )
      )
      // Stock settings: no allowImportingTsExtensions, no customConditions; skipLibCheck off, so the package's .d.ts are checked too.
      writeFileSync(
        path.join(dir, "tsconfig.json"),
        JSON.stringify(
          {
            compilerOptions: {
              target: "es2022",
              module: "NodeNext",
              moduleResolution: "NodeNext",
              strict: true,
              types: ["node"],
              noEmit: true,
              skipLibCheck: false
            },
            include: ["*.ts"]
          },
          null,
          2
        )
      )
      copyFileSync(path.join(repo, "examples", "server.ts"), path.join(dir, "server.ts"))
      for (const file of ["testing.test.ts", "plugin.ts", "plugin.test.ts", "policies.ts", "policies.test.ts"]) copyFileSync(path.join(repo, "examples", file), path.join(dir, file))
      yield* runOk("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline"], { cwd: dir, env: npmEnv, timeout: "4 minutes" })

      const bin = (name: string) => path.join(dir, "node_modules", ".bin", name)
      return {
        dir,
        entries,
        bin,
        runtime: (which: Runtime) =>
          which === "Node 24"
            ? { node: process.execPath, version: process.version, env: withPath(node24, path.dirname(bin("node"))) }
            : { node: bin("node"), version: `v${floor}`, env: withPath(path.dirname(bin("node"))) }
      }
    })
  )
}

const runtimes: ReadonlyArray<Runtime> = ["Node 24", "engines floor"]
const label = (which: Runtime) => which === "Node 24" ? `Node ${process.versions.node}` : `Node ${floor} (engines floor)`

/** The `node` a shebang (`#!/usr/bin/env node`) finds on the environment's PATH, by its version. */
const nodeOnPath = (env: Env, cwd: string) => runOk("node", ["--version"], { cwd, env }).pipe(Effect.map((result) => result.output.trim()))

/** Without colours. */
const plain = (text: string) => text.replace(/\u001b\[[0-9;]*m/g, "")

layer(Consumer.layer, { timeout: "5 minutes", excludeTestServices: true })("package as a user installs it", (it) => {
  it.effect("the tarball holds dist/, README and LICENSE, and no tests, benchmarks, examples, scripts, configs or keys", () =>
    Effect.gen(function*() {
      const { entries } = yield* Consumer
      expect(entries).toEqual(expect.arrayContaining([
        "package/package.json",
        "package/dist/index.js",
        "package/dist/index.d.ts",
        "package/dist/testing/index.js",
        "package/dist/testing/index.d.ts",
        "package/dist/bin/effect-smtp.js",
        "package/LICENSE",
        "package/README.md"
      ]))
      const development = /^package\/(test|bench|examples|scripts|\.ci|\.scratch|node_modules)\/|tsconfig|vitest\.config|\.test\.ts$|\.(key|crt|pem)$/
      expect(entries.filter((entry) => development.test(entry))).toEqual([])
    }))

  it.effect("the tarball holds CHANGELOG.md", () =>
    Effect.gen(function*() {
      const { entries } = yield* Consumer
      expect(entries).toContain("package/CHANGELOG.md")
    }))

  it.effect("a consumer app and test type-check against dist/'s declarations with stock settings, skipLibCheck off", () =>
    Effect.gen(function*() {
      const consumer = yield* Consumer
      const result = yield* run(consumer.bin("tsc"), ["-p", ".", "--listFiles"], {
        cwd: consumer.dir,
        env: consumer.runtime("engines floor").env,
        timeout: "2 minutes"
      })
      expect(result.code, result.output).toBe(0)
      const fromPackage = result.output.split("\n").filter((file) => file.includes("/node_modules/effect-smtp/"))
      expect(fromPackage.some((file) => file.endsWith("/node_modules/effect-smtp/dist/index.d.ts"))).toBe(true)
      expect(fromPackage.some((file) => file.endsWith("/node_modules/effect-smtp/dist/testing/index.d.ts"))).toBe(true)
      expect(fromPackage.filter((file) => !/\/node_modules\/effect-smtp\/dist\/.+\.d\.ts$/.test(file))).toEqual([])
    }), 150_000)

  for (const which of runtimes) {
    it.effect(`the consumer app (examples/server.ts) runs on ${label(which)} with the library from dist/: 250 over STARTTLS, SIGTERM stops it`, () =>
      Effect.gen(function*() {
        const consumer = yield* Consumer
        const { node, version, env } = consumer.runtime(which)
        expect((yield* runOk(node, ["--version"], { cwd: consumer.dir, env })).output.trim()).toBe(version)
        const port = yield* freePort
        const server = yield* serve(node, ["server.ts"], {
          cwd: consumer.dir,
          env: {
            ...env,
            SMTP_HOST: "127.0.0.1",
            SMTP_PORT: String(port),
            SMTP_TLS_CERT: fixture("localhost.crt"),
            SMTP_TLS_KEY: fixture("localhost.key")
          },
          port
        })
        expect(yield* sendMail(server.port, "alice@example.test", `app on ${label(which)}`)).toMatch(/^250 /)
        // The example keeps NodeRuntime.runMain's default teardown: 130 after the signal interrupts it (killed, it would report signal SIGTERM).
        expect(yield* stop(server)).toMatchObject({ code: 130, signal: null })
      }), 60_000)
  }

  it.effect("the consumer's vitest runs the testing, plugin and policies examples (effect-smtp/testing, Layer.mock, flow, the plugins) and they pass", () =>
    Effect.gen(function*() {
      const consumer = yield* Consumer
      const result = yield* run(consumer.bin("vitest"), ["run"], { cwd: consumer.dir, env: consumer.runtime("engines floor").env, timeout: "2 minutes" })
      expect(result.code, result.output).toBe(0)
      expect(plain(result.output)).toMatch(/✓ testing\.test\.ts/)
      expect(plain(result.output)).toMatch(/✓ plugin\.test\.ts/)
      expect(plain(result.output)).toMatch(/✓ policies\.test\.ts/)
    }), 150_000)

  it.effect("effect-smtp --help, from node_modules/.bin and through npx, lists the SMTP_* variables", () =>
    Effect.gen(function*() {
      const consumer = yield* Consumer
      const { env } = consumer.runtime("engines floor")
      // --yes=false: the project's own bin or an error, never a package of that name from the registry.
      for (const [command, args] of [[consumer.bin("effect-smtp"), ["--help"]], ["npx", ["--yes=false", "effect-smtp", "--help"]]] as const) {
        const result = yield* run(command, args, { cwd: consumer.dir, env })
        expect(result.code, result.output).toBe(0)
        expect(result.output).toContain("SMTP_PORT")
        expect(result.output).toContain("SMTP_MAILDIR")
      }
    }), 60_000)

  for (const which of runtimes) {
    it.effect(`effect-smtp on ${label(which)}: stores a message sent over STARTTLS in <maildir>/new/, serves /metrics, SIGTERM exits 0`, () =>
      Effect.gen(function*() {
        const consumer = yield* Consumer
        const { version, env } = consumer.runtime(which)
        expect(yield* nodeOnPath(env, consumer.dir)).toBe(version) // the node the bin's shebang finds
        const maildir = path.join(yield* tempDir("effect-smtp-maildir-"), "mail")
        const server = yield* serve(consumer.bin("effect-smtp"), [], {
          cwd: consumer.dir,
          env: { ...env, SMTP_HOST: "127.0.0.1", SMTP_PORT: "0", SMTP_HOSTNAME: "mx.test", SMTP_MAILDIR: maildir, SMTP_METRICS_PORT: "0" }
        })
        expect(server.output()).toContain(`effect-smtp listening on 127.0.0.1:${server.port}, storing to ${maildir}, metrics at http://127.0.0.1:`)
        const subject = `command on ${label(which)}`
        expect(yield* sendMail(server.port, "alice@example.test", subject)).toMatch(/^250 /)
        const stored = readdirSync(path.join(maildir, "new"))
        expect(stored).toHaveLength(1)
        expect(readFileSync(path.join(maildir, "new", stored[0]!), "utf8")).toContain(`Subject: ${subject}`)
        // The metrics endpoint, whose HTTP server the built package loads when it is asked for.
        const metrics = /metrics at (\S+)/.exec(server.output())![1]!
        expect(yield* Effect.promise(() => fetch(metrics).then((response) => response.text()))).toMatch(/^smtp_messages_accepted_total 1$/m)
        expect(yield* stop(server)).toMatchObject({ code: 0, signal: null })
      }), 60_000)
  }
})
