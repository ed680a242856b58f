/**
 * Client addresses against network lists, for the plugins that decide by
 * network (access lists, require TLS, rate limits, greylisting).
 *
 * A list entry is a CIDR range (`10.0.0.0/8`, `2001:db8::/32`) or one address
 * (`192.0.2.7`, `::1`); IPv4 clients that reach a dual-stack socket as
 * `::ffff:192.0.2.7` are matched as the IPv4 address they are.
 */
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as IpNetwork from "effect/net/IpNetwork"
import * as NetAddress from "effect/net/NetAddress"

/**
 * One address is the network of just that address. An IPv4-mapped entry (`::ffff:192.0.2.0/120`, in any
 * spelling) is the IPv4 network it maps, as clients' mapped addresses are matched as IPv4 (`address`).
 */
const fromEntry = (entry: string) =>
  Result.map(IpNetwork.fromString(entry.includes("/") ? entry : `${entry}/${entry.includes(":") ? 128 : 32}`), (network) =>
    NetAddress.isIpv4Address(network.address) || network.prefixLength < 96 ? network : Option.match(NetAddress.fromIpv4Mapped(network.address), {
      onNone: () => network,
      onSome: (ipv4) => IpNetwork.fromAddressUnsafe(ipv4, network.prefixLength - 96)
    }))

/** Why a list entry is not a network or an address, if it is not. */
export const parseError = (entry: string): Option.Option<string> => {
  const parsed = fromEntry(entry)
  return Result.isSuccess(parsed) ? Option.none() : Option.some(parsed.failure.message)
}

/** Parses list entries; an entry that is neither a network nor an address throws, naming it. */
export const parse = (entries: ReadonlyArray<string>): ReadonlyArray<IpNetwork.IpNetwork> =>
  entries.map((entry) => {
    const parsed = fromEntry(entry)
    if (Result.isFailure(parsed)) throw new Error(`not an IP network or address: "${entry}" (${parsed.failure.message})`)
    return parsed.success
  })

/** The client's address as a network address, IPv4-mapped IPv6 unwrapped; `None` for what is not an IP address. */
export const address = (remoteAddress: string): Option.Option<NetAddress.IpAddress> => {
  // A link-local address's zone (`fe80::1%eth0`) says which interface, not which host.
  const parsed = NetAddress.ipFromString(remoteAddress.replace(/%.*$/, ""))
  if (Result.isFailure(parsed)) return Option.none()
  const ip = parsed.success
  return NetAddress.isIpv4Address(ip) ? Option.some(ip) : Option.some(Option.getOrElse(NetAddress.fromIpv4Mapped(ip), () => ip))
}

/** The most specific network of `networks` that holds `ip` (the longest prefix), if any. */
export const longestMatch = (networks: ReadonlyArray<IpNetwork.IpNetwork>, ip: NetAddress.IpAddress): Option.Option<IpNetwork.IpNetwork> => {
  let best: IpNetwork.IpNetwork | undefined
  for (const network of networks) {
    if (IpNetwork.contains(network, ip) && (best === undefined || network.prefixLength > best.prefixLength)) best = network
  }
  return Option.fromUndefinedOr(best)
}

/** Whether one of `networks` holds the client at `remoteAddress`. */
export const includes = (networks: ReadonlyArray<IpNetwork.IpNetwork>, remoteAddress: string): boolean =>
  Option.match(address(remoteAddress), { onNone: () => false, onSome: (ip) => Option.isSome(longestMatch(networks, ip)) })

/** The client's network, as the unit that shares a limit or a greylist entry: its /24 (IPv4) or /64 (IPv6). */
export const clientNetwork = (remoteAddress: string): string =>
  Option.match(address(remoteAddress), {
    onNone: () => remoteAddress,
    onSome: (ip) => IpNetwork.format(IpNetwork.fromAddressUnsafe(ip, NetAddress.isIpv4Address(ip) ? 24 : 64))
  })
