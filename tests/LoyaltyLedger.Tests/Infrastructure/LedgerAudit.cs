using Dapper;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Tests.Infrastructure;

/// <summary>Reads the raw ledger of one organization, to check what a call wrote (or did not).</summary>
public static class LedgerAudit
{
    /// <summary>Rows per table for the organization: a refused request must leave these unchanged.</summary>
    public static Task<(long Events, long Entries, long Lots, long Bills, long Customers)> CountsAsync(LedgerDatabase db, long orgId) =>
        db.ReadAsync(c => c.QuerySingleAsync<(long, long, long, long, long)>(
            """
            SELECT (SELECT COUNT(*) FROM events WHERE org_id = @orgId),
                   (SELECT COUNT(*) FROM ledger_entries WHERE org_id = @orgId),
                   (SELECT COUNT(*) FROM lots WHERE org_id = @orgId),
                   (SELECT COUNT(*) FROM bills WHERE org_id = @orgId),
                   (SELECT COUNT(*) FROM customers WHERE org_id = @orgId)
            """, new { orgId }), CancellationToken.None);

    /// <summary>Every table that holds an organization's rows.</summary>
    public static readonly string[] OrgTables =
    [
        "api_keys", "id_counters", "programs", "currencies", "stores", "tills", "customers", "customer_identifiers", "loyalty_accounts",
        "user_groups", "group_members", "wallets", "events", "ledger_entries", "lots", "lot_movements", "bills", "idempotency_keys",
        "voucher_definitions", "voucher_instances", "vault_receipts", "vault_account_expiry", "redemption_reversals", "write_audit",
        "owner_event_counts", "outbox_events", "expiry_notices", "webhook_endpoints", "webhook_deliveries",
    ];

    /// <summary>
    /// A snapshot of everything the organization has: rows per table, each wallet's balance, and each
    /// key's secret hash and revocation (a rotation or revocation changes no row count). A request
    /// that writes nothing leaves it equal.
    /// </summary>
    public static Task<string> SnapshotAsync(LedgerDatabase db, long orgId) => db.ReadAsync(async c =>
    {
        var parts = new List<string>();
        foreach (var table in OrgTables)
            parts.Add($"{table}={await c.ExecuteScalarAsync<long>($"SELECT COUNT(*) FROM {table} WHERE org_id = @orgId", new { orgId })}");
        var balances = await c.QueryAsync<(long WalletId, long Balance)>("SELECT wallet_id, balance FROM wallets WHERE org_id = @orgId ORDER BY wallet_id", new { orgId });
        parts.Add("balances=" + string.Join(",", balances.Select(b => $"{b.WalletId}:{b.Balance}")));
        var keys = await c.QueryAsync<(string KeyId, string SecretHash, long? RevokedAt)>(
            "SELECT key_id, secret_hash, revoked_at FROM api_keys WHERE org_id = @orgId ORDER BY key_id", new { orgId });
        parts.Add("keys=" + string.Join(",", keys.Select(k => $"{k.KeyId}:{k.SecretHash}:{k.RevokedAt}")));
        // A webhook change or rotation changes no row count either.
        var webhooks = await c.QueryAsync<(long EndpointId, string Url, string Events, string? Description, long Enabled, string Secret, long UpdatedAt)>(
            "SELECT endpoint_id, url, events, description, enabled, secret, updated_at FROM webhook_endpoints WHERE org_id = @orgId ORDER BY endpoint_id", new { orgId });
        parts.Add("webhooks=" + string.Join(",", webhooks.Select(w => $"{w.EndpointId}:{w.Url}:{w.Events}:{w.Description}:{w.Enabled}:{w.Secret}:{w.UpdatedAt}")));
        var deliveries = await c.QueryAsync<(long DeliveryId, long NextAttemptAt)>(
            "SELECT delivery_id, COALESCE(next_attempt_at, 0) FROM webhook_deliveries WHERE org_id = @orgId ORDER BY delivery_id", new { orgId });
        parts.Add("deliveries=" + string.Join(",", deliveries.Select(d => $"{d.DeliveryId}:{d.NextAttemptAt}")));
        return string.Join("\n", parts);
    }, CancellationToken.None);

    /// <summary>The organization's invariant violations (empty when sound), from the production verifier.</summary>
    public static async Task<IReadOnlyList<string>> ViolationsAsync(LedgerDatabase db, long orgId) =>
        (await LoyaltyLedger.Audit.LedgerVerifier.VerifyAsync(db, orgId, CancellationToken.None)).Violations;
}
