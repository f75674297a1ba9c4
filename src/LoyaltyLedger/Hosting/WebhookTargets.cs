using System.Net;
using System.Net.Sockets;

namespace LoyaltyLedger.Server.Hosting;

/// <summary>A delivery refused before connecting: its host resolves only to addresses deliveries may not go to.</summary>
public sealed class WebhookTargetRefusedException(string message) : Exception(message);

/// <summary>
/// Where deliveries may connect. Loopback, private (10/8, 172.16/12, 192.168/16, fc00::/7),
/// link-local (169.254/16, fe80::/10) and unspecified addresses are refused unless
/// <c>Ledger:Webhooks:AllowPrivateTargets</c> is true: an endpoint URL must not turn the server
/// into a way into its own network. The check runs in the connection itself
/// (<see cref="SocketsHttpHandler.ConnectCallback"/>) on the addresses DNS gave, and the socket
/// connects to exactly the address checked, so a name that resolves differently a second time
/// (DNS rebinding) cannot slip past it.
/// </summary>
public static class WebhookTargets
{
    /// <summary>Why deliveries may not go to <paramref name="address"/>, or null if they may.</summary>
    public static string? Refusal(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6) address = address.MapToIPv4();
        if (IPAddress.IsLoopback(address)) return "a loopback address";
        if (address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any)) return "an unspecified address";
        if (address.AddressFamily == AddressFamily.InterNetwork)
        {
            var b = address.GetAddressBytes();
            return b[0] switch
            {
                0 => "an unspecified address",
                10 => "a private address",
                172 when b[1] is >= 16 and <= 31 => "a private address",
                192 when b[1] == 168 => "a private address",
                169 when b[1] == 254 => "a link-local address",
                _ => null,
            };
        }
        if (address.AddressFamily == AddressFamily.InterNetworkV6)
        {
            var b = address.GetAddressBytes();
            if ((b[0] & 0xFE) == 0xFC) return "a private address";
            if (b[0] == 0xFE && (b[1] & 0xC0) == 0x80) return "a link-local address";
        }
        return null;
    }

    /// <summary>Resolves the host, refuses what <see cref="Refusal"/> refuses, and connects to the first address allowed that answers.</summary>
    public static async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, bool allowPrivate, CancellationToken ct)
    {
        var host = context.DnsEndPoint.Host;
        IPAddress[] addresses = IPAddress.TryParse(host.Trim('[', ']'), out var literal) ? [literal] : await Dns.GetHostAddressesAsync(host, ct);
        var allowed = allowPrivate ? addresses : addresses.Where(a => Refusal(a) is null).ToArray();
        if (allowed.Length == 0)
        {
            var first = addresses.FirstOrDefault();
            throw new WebhookTargetRefusedException(first is null
                ? $"{host} has no address."
                : $"Refused: {host} {(literal is null ? $"resolves to {first}, " : "is ")}{Refusal(first)}; deliveries go only to public addresses unless Ledger:Webhooks:AllowPrivateTargets is true.");
        }
        Exception? last = null;
        foreach (var address in allowed)
        {
            var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                await socket.ConnectAsync(new IPEndPoint(address, context.DnsEndPoint.Port), ct);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch (SocketException ex)
            {
                socket.Dispose();
                last = ex;
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }
        throw last!;
    }
}
