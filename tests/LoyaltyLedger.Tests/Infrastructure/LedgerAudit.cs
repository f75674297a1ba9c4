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

    /// <summary>The organization's invariant violations (empty when sound), from the production verifier.</summary>
    public static async Task<IReadOnlyList<string>> ViolationsAsync(LedgerDatabase db, long orgId) =>
        (await LoyaltyLedger.Audit.LedgerVerifier.VerifyAsync(db, orgId, CancellationToken.None)).Violations;
}
