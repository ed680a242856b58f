/**
 * The app's user: Fumi "Auth (onAuth)" and "User Authentication", smtp-server "Authentication" and "onAuth".
 *
 * Fumi's `ctx.accept(user)` and smtp-server's `callback(null, { user })` become the auth middleware's result: the
 * user type is a service of the app's own, which later phases read, typed, with `Effect.serviceOption`.
 */
import { Context, Effect, Option, Redacted } from "effect"
import { Credentials, Reject, SmtpApp } from "effect-smtp"

// #region fumi-middleware: Auth (onAuth)
export class User extends Context.Service<User, { readonly id: number; readonly name: string }>()("app/User") {}

export const admin = SmtpApp.empty.pipe(
  SmtpApp.onAuth(User, () =>
    Effect.gen(function*() {
      const { username, password } = yield* Credentials
      if (username === "admin" && Redacted.value(password) === "secret") return { id: 1, name: "Admin" } // accept
      return yield* Reject.permanent(535, "5.7.8", "Invalid credentials")
    })
  )
)
// #endregion

/** Fumi's `authenticateUser(username, password)`: the app's user store. */
export class Users extends Context.Service<Users, {
  readonly authenticate: (username: string, password: Redacted.Redacted<string>) => Effect.Effect<Option.Option<Account["Service"]>>
}>()("app/Users") {}

// #region fumi-session: User Authentication
export class Account extends Context.Service<Account, {
  readonly id: number
  readonly username: string
  readonly email: string
  readonly roles: ReadonlyArray<string>
}>()("app/Account") {}

export const accounts = SmtpApp.empty.pipe(
  SmtpApp.onAuth(Account, () =>
    Effect.gen(function*() {
      const { username, password } = yield* Credentials
      const user = yield* Users.use((users) => users.authenticate(username, password))
      if (Option.isSome(user)) return user.value // the connection's Account from now on
      return yield* Reject.permanent(535, "5.7.8", "Authentication failed")
    })
  ),
  // Access user in later phases
  SmtpApp.onMailFrom((next) =>
    Effect.gen(function*() {
      const user = yield* Effect.serviceOption(Account)
      yield* Effect.log(`Authenticated user: ${Option.match(user, { onNone: () => "none", onSome: (u) => u.username })}`)
      yield* next
    })
  )
)
// #endregion

// #region smtp-server: Authentication, onAuth
export class MailUser extends Context.Service<MailUser, { readonly id: number; readonly email: string }>()("app/MailUser") {}

export const mailUsers = SmtpApp.empty.pipe(
  SmtpApp.onAuth(MailUser, () => Effect.succeed({ id: 123, email: "user@example.com" })), // set by onAuth
  SmtpApp.onMailFrom((next) =>
    Effect.gen(function*() {
      const user = yield* Effect.serviceOption(MailUser) // access in other handlers
      if (Option.isSome(user)) yield* Effect.log(user.value.email)
      yield* next
    })
  )
)
// #endregion
