using Dapper;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Support;

/// <summary>
/// The support console's sessions, kept in the database: the browser's cookie holds only a random
/// session id, so signing out deletes the session itself (a copied cookie is worth nothing after),
/// and every server process sharing the database knows every session. The ticket is the console's
/// own encrypted blob; this class never reads it.
/// </summary>
public static class ConsoleSessionRecords
{
    public static Task SaveAsync(LedgerDatabase db, string sessionId, long orgId, string keyId, long expiresAtMs, string ticket, long nowMs,
        CancellationToken ct) =>
        db.WriteAsync(async (c, tx) =>
        {
            // Expired sessions go as new ones come: the table holds the sessions of the last hours only.
            await c.ExecuteAsync(new CommandDefinition("DELETE FROM console_sessions WHERE expires_at < @nowMs", new { nowMs }, tx, cancellationToken: ct));
            return await c.ExecuteAsync(
                new CommandDefinition("""
                INSERT INTO console_sessions (session_id, org_id, key_id, expires_at, ticket) VALUES (@sessionId, @orgId, @keyId, @expiresAtMs, @ticket)
                ON CONFLICT (session_id) DO UPDATE SET expires_at = excluded.expires_at, ticket = excluded.ticket
                """, new { sessionId, orgId, keyId, expiresAtMs, ticket }, tx, cancellationToken: ct));
        }, ct);

    /// <summary>The session's ticket, or null when there is no such session or it has expired.</summary>
    public static Task<string?> FindAsync(LedgerDatabase db, string sessionId, long nowMs, CancellationToken ct) =>
        db.ReadAsync(c => c.ExecuteScalarAsync<string?>(
            new CommandDefinition("SELECT ticket FROM console_sessions WHERE session_id = @sessionId AND expires_at >= @nowMs", new { sessionId, nowMs }, cancellationToken: ct)), ct);

    public static Task DeleteAsync(LedgerDatabase db, string sessionId, CancellationToken ct) =>
        db.WriteAsync((c, tx) => c.ExecuteAsync(new CommandDefinition("DELETE FROM console_sessions WHERE session_id = @sessionId", new { sessionId }, tx, cancellationToken: ct)), ct);

    /// <summary>The key ring that encrypts the console's cookies and antiforgery tokens (XML elements, as the framework writes them).</summary>
    public static Task<IReadOnlyList<string>> KeyRingAsync(LedgerDatabase db, CancellationToken ct) =>
        // Out of turn: the framework asks for the ring synchronously, and a thread blocked behind
        // queued reads is a thread the reads holding the slots may need to finish.
        db.ReadOutOfTurnAsync<IReadOnlyList<string>>(async c => (await c.QueryAsync<string>(new CommandDefinition("SELECT xml FROM console_key_ring ORDER BY created_at, name", cancellationToken: ct))).ToList(), ct);

    public static Task AddKeyAsync(LedgerDatabase db, string name, string xml, long nowMs, CancellationToken ct) =>
        db.WriteAsync((c, tx) => c.ExecuteAsync(
            new CommandDefinition("INSERT INTO console_key_ring (name, xml, created_at) VALUES (@name, @xml, @nowMs) ON CONFLICT (name) DO NOTHING",
            new { name, xml, nowMs }, tx, cancellationToken: ct)), ct);
}
