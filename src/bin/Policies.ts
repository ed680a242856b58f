/**
 * The mail server's policies: their settings, and the app the package's
 * plugins make of them, with the stores they need (in memory, or shared
 * through Redis by every instance given the same `SMTP_REDIS_URL`).
 */
import * as NodeRedis from "@effect/platform-node/NodeRedis"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Persistence from "effect/persistence/Persistence"
import * as RateLimiter from "effect/persistence/RateLimiter"
import * as Networks from "../internal/Networks.ts"
import * as PolicyMemory from "../layers/PolicyMemory.ts"
import type * as SmtpServerConfig from "../layers/SmtpServerConfig.ts"
import * as SettingsReader from "../internal/SettingsReader.ts"
import * as SmtpApp from "../phases/SmtpApp.ts"
import { accessList } from "../plugins/accessList.ts"
import { authUsers } from "../plugins/authUsers.ts"
import { deliver } from "../plugins/deliver.ts"
import { greylisting } from "../plugins/greylisting.ts"
import { localMailboxes, localRecipients } from "../plugins/localRecipients.ts"
import { type Limit, rateLimits } from "../plugins/rateLimits.ts"
import { receivedHeader } from "../plugins/receivedHeader.ts"
import { requireTls } from "../plugins/requireTls.ts"
import { senderRules } from "../plugins/senderRules.ts"
import { Mailboxes } from "../services/Mailboxes.ts"
import type { MessageStore } from "../services/MessageStore.ts"
import { hashPassword, isHash, userEntry, Users, type UsersError } from "../services/Users.ts"

const setting = SettingsReader.setting

const Domain = Schema.String.check(
  Schema.isPattern(/^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/, {
    message: "Expected comma-separated domain names"
  })
)

const Address = Schema.String.check(Schema.isPattern(/^[^@\s,]+@[^@\s,]+$/, { message: "Expected comma-separated addresses (user@domain)" }))

const SenderPattern = Schema.String.check(
  Schema.isPattern(/^(?:[^@\s,]+@)?@?\.?[^@\s,]+$/, { message: "Expected comma-separated addresses, domains (example.com) or subdomains (.example.com)" })
)

const UserPassword = Schema.String.check(
  Schema.isPattern(/^[^:\s]+:\S+$/, { message: "Expected comma-separated user:hash pairs" })
)

const Network = Schema.String.check(
  Schema.makeFilter((entry: string) =>
    Option.match(Networks.parseError(entry), { onNone: () => true, onSome: () => "Expected comma-separated CIDR ranges or IP addresses" })
  )
)

const decodeDuration = Schema.decodeUnknownOption(Schema.DurationFromString)

const RATE = /^\s*(\d+)\s*\/\s*(.+?)\s*$/

/** `count/duration`, as in `30/1 minute`. */
const limitOf = (text: string): Option.Option<Limit> => {
  const match = RATE.exec(text)
  if (match === null) return Option.none()
  const limit = Number(match[1])
  const window = decodeDuration(match[2])
  return limit > 0 && Option.isSome(window) && Duration.isGreaterThan(window.value, Duration.zero)
    ? Option.some({ limit, window: window.value })
    : Option.none()
}

const Rate = Schema.String.check(
  Schema.makeFilter((text: string) => Option.isSome(limitOf(text)) || "Expected a count per duration, as in 30/1 minute")
)

const rate = (description: string) => Schema.OptionFromOptionalKey(Rate).annotate({ description })

const Delay = Schema.DurationFromString.check(
  Schema.makeFilter((duration: Duration.Duration) => Duration.isGreaterThan(duration, Duration.zero) || "Expected a duration longer than zero"),
  // greylisting's retry window.
  Schema.makeFilter((duration: Duration.Duration) => Duration.isLessThan(duration, Duration.hours(24)) || "Expected a duration shorter than 24 hours")
)

const RedisUrl = Schema.String.check(Schema.isPattern(/^rediss?:\/\/\S+$/, { message: "Expected a redis:// or rediss:// URL" }))

/** The policy settings of the command (the lists comma-separated). */
export const fields = {
  domains: setting(
    Schema.Array(Domain),
    [],
    "local domains; other recipients get `550 5.7.1` unless the session is authenticated (none: accept all)"
  ),
  mailboxes: setting(
    Schema.Array(Address),
    [],
    "the mailboxes received for; other recipients at the local domains get `550 5.1.1` (none: any mailbox)"
  ),
  authUsers: setting(
    Schema.Array(UserPassword),
    [],
    "`user:hash` pairs (hashes from `effect-smtp hash-password`; a plain password is for development only, with a warning); " +
      "with users, mail only from authenticated sessions (`530 5.7.0`), failed logins `535 5.7.8`"
  ),
  authUsersFile: Schema.OptionFromOptionalKey(Schema.NonEmptyString).annotate({
    description: "a file of `user:hash` lines, read again when it changes, in place of the list above (none: the list)"
  }),
  allowNetworks: setting(
    Schema.Array(Network),
    [],
    "CIDR ranges or addresses served; when set, others get `554 5.7.1` at connect (none: everybody)"
  ),
  denyNetworks: setting(
    Schema.Array(Network),
    [],
    "CIDR ranges or addresses refused at connect with `554 5.7.1` (a more specific allowed entry wins)"
  ),
  requireTls: setting(
    Schema.Literals(["never", "always", "authenticated"]),
    "never",
    "refuse MAIL without TLS (`530 5.7.0`): `never`, `always`, or only from `authenticated` sessions"
  ),
  senderAllow: setting(
    Schema.Array(SenderPattern),
    [],
    "senders accepted (addresses, domains, `.subdomains`); when set, others get `550 5.7.1` (none: all)"
  ),
  senderDeny: setting(Schema.Array(SenderPattern), [], "senders refused with `550 5.7.1` (a more specific allowed pattern wins)"),
  rateConnections: rate("connections per client network (/24, /64), as `30/1 minute`; past it `421 4.7.0` (none: no limit)"),
  rateSenderMessages: rate("messages per sender address, as `100/1 hour`; past it `451 4.7.1` (none: no limit)"),
  rateUserMessages: rate("messages per authenticated user, as `100/1 hour`; past it `451 4.7.1` (none: no limit)"),
  rateUserRecipients: rate("recipients per authenticated user, as `500/1 hour`; past it `451 4.7.1` (none: no limit)"),
  greylisting: setting(Schema.Boolean, false, "greylist new (network, sender, recipient) triplets with `451 4.7.1`"),
  greylistDelay: SettingsReader.asText(setting(Delay, "5 minutes", "how long a greylisted triplet waits before its retry is accepted")),
  greylistPassNetworks: setting(Schema.Array(Network), [], "CIDR ranges or addresses never greylisted"),
  redisUrl: Schema.OptionFromOptionalKey(RedisUrl).annotate({
    description: "keep rate limits and the greylist in this Redis, shared by every instance given it (none: in memory)"
  }),
  policyStoreFailure: setting(
    Schema.Literals(["open", "closed"]),
    "open",
    "when the policy store fails: `open` lets mail through with a warning, `closed` answers `451 4.3.0`"
  )
}

/** The settings' names that are comma-separated lists. */
export const lists: ReadonlySet<string> = new Set(
  Object.entries(fields).flatMap(([key, schema]) => schema.ast._tag === "Arrays" ? [key] : [])
)

export type Settings = Schema.Struct.Type<typeof fields>

/** What the policies need: the stores they use, and the message store of `deliver`. */
type Needs = Mailboxes | RateLimiter.RateLimiter | Persistence.BackingPersistence | MessageStore

/** The app the policies are added to, one after the other. */
type App = SmtpApp.SmtpApp<never, never, Needs>

/**
 * A plugin as a step of the app, checked one by one: a plugin that needs a service `Needs` does not name is a
 * compile error here (an array literal of them would not check each element as strictly).
 */
const policy = (plugin: (app: App) => App) => plugin

const limit = (text: Option.Option<string>): Limit | undefined => Option.getOrUndefined(Option.flatMap(text, limitOf))

/** The policies the settings switch on, in the order they run in their phases. */
const policies = (settings: Settings, server: SmtpServerConfig.Settings): ReadonlyArray<(app: App) => App> => [
  ...(settings.allowNetworks.length > 0 || settings.denyNetworks.length > 0
    ? [policy(accessList({ allow: settings.allowNetworks, deny: settings.denyNetworks }))]
    : []),
  ...(settings.requireTls === "never" ? [] : [policy(requireTls({ authenticated: settings.requireTls === "authenticated" }))]),
  ...(settings.senderAllow.length > 0 || settings.senderDeny.length > 0
    ? [policy(senderRules({ allow: settings.senderAllow, deny: settings.senderDeny }))]
    : []),
  ...(settings.mailboxes.length > 0
    ? [policy(localMailboxes({ domains: settings.domains }))]
    : settings.domains.length > 0
    ? [policy(localRecipients({ domains: settings.domains }))]
    : []),
  ...(settings.greylisting
    ? [policy(greylisting({ delay: settings.greylistDelay, passNetworks: settings.greylistPassNetworks, onStoreFailure: settings.policyStoreFailure }))]
    : []),
  policy(rateLimits({
    connections: limit(settings.rateConnections),
    senderMessages: limit(settings.rateSenderMessages),
    userMessages: limit(settings.rateUserMessages),
    userRecipients: limit(settings.rateUserRecipients),
    onStoreFailure: settings.policyStoreFailure,
    proxies: server.xclientPeers
  }))
]

/** The receiving app: the policies the settings switch on, the `Received:` field, then the store. */
export const app = (settings: Settings, server: SmtpServerConfig.Settings): App => {
  const start: App = SmtpApp.empty
  return policies(settings, server).reduce((app, plugin) => plugin(app), start).pipe(receivedHeader({ hostname: server.hostname }), deliver)
}

/** Whether the settings name users who may log in. */
export const hasUsers = (settings: Settings): boolean => settings.authUsers.length > 0 || Option.isSome(settings.authUsersFile)

/**
 * The users of the settings: the file's, or the list's, whose plain passwords
 * are hashed here (with a warning: the list is then a secret in the
 * environment). Both at once is a mistake the start-up refuses.
 */
export const users = (settings: Settings): Layer.Layer<Users, UsersError> =>
  Option.match(settings.authUsersFile, {
    onSome: Users.layerFile,
    onNone: () =>
      Layer.unwrap(Effect.gen(function*() {
        // The pairs' pattern was checked when the settings were read: each has a user name.
        const entries = settings.authUsers.flatMap((pair) => {
          const entry = userEntry(pair)
          return entry === undefined ? [] : [entry]
        })
        const plain = entries.filter(([, secret]) => !isHash(secret)).map(([username]) => username)
        if (plain.length > 0) {
          yield* Effect.logWarning("plain passwords in SMTP_AUTH_USERS: for development only, store hashes from effect-smtp hash-password").pipe(
            Effect.annotateLogs({ users: plain.join(",") })
          )
        }
        const hashed = yield* Effect.forEach(entries, ([username, secret]) =>
          isHash(secret)
            ? Effect.succeed([username, secret] as const)
            : Effect.map(hashPassword(Redacted.make(secret)), (hash) => [username, hash] as const))
        return Users.layerMemory(hashed)
      }))
  })

/** The stores of the rate limits and the greylist: Redis when a URL is given, memory otherwise. */
export const stores = (settings: Settings) =>
  Option.match(settings.redisUrl, {
    onNone: () => PolicyMemory.layer(),
    onSome: (url) =>
      Layer.mergeAll(RateLimiter.layer.pipe(Layer.provide(RateLimiter.layerStoreRedis())), Persistence.layerBackingRedis).pipe(
        // Without an offline queue a command fails at once while Redis is away (and the policy decides
        // as `policyStoreFailure` says), rather than waiting, then counting late once Redis is back.
        Layer.provide(NodeRedis.layer({ url, disableOfflineQueue: true }))
      )
  })

/** The mailboxes of the settings, for `localMailboxes`. */
export const mailboxes = (settings: Settings): Layer.Layer<Mailboxes> => Mailboxes.layerList(settings.mailboxes)
