using System.Data.Common;
using Dapper;

namespace LoyaltyLedger.Ledger;

/// <summary>A wallet's balance as the native API shows it.</summary>
public sealed record BalanceView(long ProgramId, string ProgramName, string? Currency, string Category, Points Balance);

public static class Balances
{
    private sealed class Row
    {
        public long ProgramId { get; set; }
        public string ProgramName { get; set; } = "";
        public string? Currency { get; set; }
        public string Category { get; set; } = "";
        public long Balance { get; set; }
    }

    /// <summary>Every wallet of an owner: per program, plain points or alternate currency, and category.</summary>
    public static async Task<IReadOnlyList<BalanceView>> ForOwnerAsync(DbConnection c, long orgId, OwnerType ownerType, long ownerId, CancellationToken ct)
    {
        var rows = await c.QueryAsync<Row>(
            new CommandDefinition("""
            SELECT w.program_id AS ProgramId, p.name AS ProgramName, cur.name AS Currency, w.category AS Category, w.balance AS Balance
            FROM wallets w
            JOIN programs p ON p.org_id = w.org_id AND p.program_id = w.program_id
            LEFT JOIN currencies cur ON cur.org_id = w.org_id AND cur.currency_id = w.currency_id
            WHERE w.org_id = @orgId AND w.owner_type = @ownerType AND w.owner_id = @ownerId
            ORDER BY w.program_id, w.currency_id, w.category
            """,
            new { orgId, ownerType = ownerType.ToWire(), ownerId }, cancellationToken: ct));
        return rows.Select(r => new BalanceView(r.ProgramId, r.ProgramName, r.Currency, r.Category, new Points(r.Balance))).ToList();
    }
}
