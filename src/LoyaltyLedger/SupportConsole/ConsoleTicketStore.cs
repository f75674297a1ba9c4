using System.Security.Cryptography;
using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Support;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;

namespace LoyaltyLedger.Server.SupportConsole;

/// <summary>
/// Keeps the console's session tickets in the database (<see cref="ConsoleSessionRecords"/>): the
/// cookie carries an encrypted random id, sign-out deletes the session on every server, and a
/// session lives no longer than its ticket's 8 hours (sliding).
/// </summary>
public sealed class ConsoleTicketStore(LedgerDatabase db, TimeProvider clock) : ITicketStore
{
    private static readonly TicketSerializer Serializer = TicketSerializer.Default;

    public async Task<string> StoreAsync(AuthenticationTicket ticket)
    {
        var id = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        await SaveAsync(id, ticket);
        return id;
    }

    public Task RenewAsync(string key, AuthenticationTicket ticket) => SaveAsync(key, ticket);

    public async Task<AuthenticationTicket?> RetrieveAsync(string key)
    {
        var stored = await ConsoleSessionRecords.FindAsync(db, key, clock.GetUtcNow().ToUnixTimeMilliseconds(), CancellationToken.None);
        return stored is null ? null : Serializer.Deserialize(Convert.FromBase64String(stored));
    }

    public Task RemoveAsync(string key) => ConsoleSessionRecords.DeleteAsync(db, key, CancellationToken.None);

    private Task SaveAsync(string id, AuthenticationTicket ticket)
    {
        var caller = ticket.Principal.Caller();
        var expires = ticket.Properties.ExpiresUtc ?? clock.GetUtcNow() + ConsoleSessions.Lifetime;
        return ConsoleSessionRecords.SaveAsync(db, id, caller.OrgId, caller.KeyId, expires.ToUnixTimeMilliseconds(),
            Convert.ToBase64String(Serializer.Serialize(ticket)), clock.GetUtcNow().ToUnixTimeMilliseconds(), CancellationToken.None);
    }
}
