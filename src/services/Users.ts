/**
 * The users who may log in, with scrypt-hashed passwords.
 *
 * `Users` checks a user name and password; the `authUsers` plugin asks it at
 * AUTH. Two stores come with it: `layerMemory` (user names and hashes given
 * in code) and `layerFile` (one `user:hash` per line, read again when the
 * file changes). A hash is what `hashPassword` makes, and
 * `effect-smtp hash-password` prints: `$scrypt$N=16384$r=8$p=1$<salt>$<key>`
 * (base64). Checking takes as long for an unknown user as for a wrong
 * password, and compares in constant time.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Semaphore from "effect/Semaphore"
import { randomBytes, scrypt, timingSafeEqual } from "node:crypto"
import { readFile, stat } from "node:fs/promises"

/** The user store could not be read. */
export class UsersError extends Schema.TaggedError<UsersError>()("UsersError", { message: Schema.String }) {}

/** Whether a user name and password match a user. */
export class Users extends Context.Service<Users, {
  readonly verify: (username: string, password: Redacted.Redacted<string>) => Effect.Effect<boolean, UsersError>
}>()("effect-smtp/Users") {
  /** Users given as user name and hash (`hashPassword`'s). A hash that is not one fails the layer. */
  static readonly layerMemory = (users: Iterable<readonly [username: string, hash: string]>): Layer.Layer<Users, UsersError> =>
    Layer.effect(Users, Effect.map(checked(Array.from(users), "layerMemory"), fromEntries))

  /**
   * Users read from a file of `user:hash` lines (blank lines and `#` comments
   * skipped). The file is read at start, where an unreadable or malformed file
   * fails the layer, and again whenever its size or time of change differs at
   * a login; a later read that fails keeps the users it had, with an error in
   * the log.
   */
  static readonly layerFile = (path: string): Layer.Layer<Users, UsersError> =>
    Layer.effect(
      Users,
      Effect.gen(function*() {
        let current = yield* readUsersFile(path)
        // One read at a time: a slow read of an older file must not replace a newer one read meanwhile.
        const reading = yield* Semaphore.make(1)
        const reloaded = Effect.gen(function*() {
          const version = yield* fileVersion(path)
          if (version === current.version) return current.users
          const next = yield* readUsersFile(path)
          current = next
          yield* Effect.logInfo("users file reloaded").pipe(Effect.annotateLogs({ path, users: next.count }))
          return next.users
        }).pipe(
          Effect.catchTag("UsersError", (error) =>
            Effect.logError("users file not reloaded, keeping the users read before").pipe(
              Effect.annotateLogs({ path, error: error.message }),
              Effect.as(current.users)
            ))
        ).pipe(Semaphore.withPermit(reading))
        return Users.of({ verify: (username, password) => Effect.flatMap(reloaded, (users) => users.verify(username, password)) })
      })
    )
}

const PARAMETERS = { N: 16384, r: 8, p: 1, maxmem: 64 * 1024 * 1024 }
const KEY_LENGTH = 32
/** The shortest salt and key a hash may have. */
const MIN_BYTES = 16
// No comma in it: SMTP_AUTH_USERS is a comma-separated list.
const HASH = /^\$scrypt\$N=(\d+)\$r=(\d+)\$p=(\d+)\$([A-Za-z0-9+/]+=*)\$([A-Za-z0-9+/]+=*)$/

/**
 * Two derivations at a time: each takes 16 MiB and one of libuv's four threads, which file writes (the Maildir)
 * and DNS lookups share, so that a flood of logins waits its turn rather than holds up storage.
 */
const deriving = Semaphore.makeUnsafe(2)

const derive = (password: string, salt: Buffer, parameters: typeof PARAMETERS, length: number) =>
  Semaphore.withPermit(deriving)(Effect.callback<Buffer, UsersError>((resume) => {
    const failed = (error: unknown) => Effect.fail(new UsersError({ message: `scrypt: ${error instanceof Error ? error.message : String(error)}` }))
    // Node throws, rather than calls back, for parameters it refuses.
    try {
      scrypt(password.normalize("NFC"), salt, length, parameters, (error, key) => resume(error === null ? Effect.succeed(key) : failed(error)))
    } catch (error) {
      resume(failed(error))
    }
  }))

// Parameters Node's scrypt takes: N a power of two, and the memory it needs (about 128·N·r bytes) within maxmem.
const usable = (n: number, r: number, p: number) =>
  n > 1 && Number.isSafeInteger(n) && (n & (n - 1)) === 0 && r >= 1 && p >= 1 && 128 * n * r < PARAMETERS.maxmem

/** A new scrypt hash of `password`, with a random salt. */
export const hashPassword = (password: Redacted.Redacted<string>): Effect.Effect<string, UsersError> => {
  const salt = randomBytes(16)
  return Effect.map(
    derive(Redacted.value(password), salt, PARAMETERS, KEY_LENGTH),
    (key) => `$scrypt$N=${PARAMETERS.N}$r=${PARAMETERS.r}$p=${PARAMETERS.p}$${salt.toString("base64")}$${key.toString("base64")}`
  )
}

/** Whether `text` is a hash `verifyPassword` reads, with parameters scrypt can use. */
export const isHash = (text: string): boolean => {
  const match = HASH.exec(text)
  // A short key (a hash cut off) would match too many passwords: an empty one, all of them.
  return match !== null && usable(Number(match[1]), Number(match[2]), Number(match[3])) &&
    Buffer.from(match[4] ?? "", "base64").length >= MIN_BYTES && Buffer.from(match[5] ?? "", "base64").length >= MIN_BYTES
}

/** Whether `password` matches `hash`, compared in constant time; a malformed hash matches nothing. */
export const verifyPassword = (hash: string, password: Redacted.Redacted<string>): Effect.Effect<boolean, UsersError> => {
  const match = HASH.exec(hash)
  if (match === null || !isHash(hash)) return Effect.succeed(false)
  const [, n, r, p, salt, key] = match
  const expected = Buffer.from(key ?? "", "base64")
  const parameters = { N: Number(n), r: Number(r), p: Number(p), maxmem: PARAMETERS.maxmem }
  return Effect.map(
    derive(Redacted.value(password), Buffer.from(salt ?? "", "base64"), parameters, expected.length),
    (derived) => timingSafeEqual(derived, expected)
  )
}

// An unknown user's password is checked against this, so that it takes as long as a known user's.
const decoy = Effect.runSync(Effect.cached(hashPassword(Redacted.make("decoy")).pipe(Effect.orDie)))

interface UserTable {
  readonly verify: (username: string, password: Redacted.Redacted<string>) => Effect.Effect<boolean, UsersError>
}

const fromEntries = (entries: ReadonlyArray<readonly [string, string]>): UserTable => {
  const hashes = new Map(entries)
  return {
    verify: (username, password) => {
      const hash = hashes.get(username)
      if (hash === undefined) return Effect.flatMap(decoy, (decoyHash) => Effect.as(verifyPassword(decoyHash, password), false))
      return verifyPassword(hash, password)
    }
  }
}

const checked = (entries: ReadonlyArray<readonly [string, string]>, source: string) => {
  const bad = entries.find(([, hash]) => !isHash(hash))
  return bad === undefined
    ? Effect.succeed(entries)
    : Effect.fail(new UsersError({ message: `${source}: the password of "${bad[0]}" is not a scrypt hash (effect-smtp hash-password makes one)` }))
}

const fileVersion = (path: string) =>
  Effect.tryPromise({
    try: () => stat(path),
    catch: (error) => new UsersError({ message: `cannot read ${path}: ${String(error)}` })
  }).pipe(Effect.map((info) => `${info.size}:${info.mtimeMs}:${info.ctimeMs}`))

/** `user:secret` as a user name and what follows its first colon; `undefined` without a user name. */
export const userEntry = (text: string): readonly [username: string, secret: string] | undefined => {
  const colon = text.indexOf(":")
  return colon <= 0 ? undefined : [text.slice(0, colon), text.slice(colon + 1)]
}

/** Parses `user:hash` lines; blank lines and `#` comments are skipped. */
export const parseUsersFile = (text: string, path: string): Effect.Effect<ReadonlyArray<readonly [string, string]>, UsersError> => {
  const entries: Array<readonly [string, string]> = []
  const lines = text.split(/\r?\n/)
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim()
    if (line === "" || line.startsWith("#")) continue
    const entry = userEntry(line)
    if (entry === undefined) return Effect.fail(new UsersError({ message: `${path}:${index + 1}: expected user:hash` }))
    entries.push(entry)
  }
  return checked(entries, path)
}

const readUsersFile = (path: string) =>
  Effect.gen(function*() {
    const version = yield* fileVersion(path)
    const text = yield* Effect.tryPromise({
      try: () => readFile(path, "utf8"),
      catch: (error) => new UsersError({ message: `cannot read ${path}: ${String(error)}` })
    })
    const entries = yield* parseUsersFile(text, path)
    return { version, users: fromEntries(entries), count: entries.length }
  })
