using System.Data.Common;
using Dapper;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Ledger;

/// <summary>A wallet's balance as the native API shows it.</summary>
public sealed record BalanceView(long ProgramId, string ProgramName, string? Currency, string Category, Points Balance);

public static class Balances
{
    /// <summary>
    /// SQL for the entry id of a wallet's balance as of an instant: the last line applied (highest
    /// entry id) among those stamped by then. Lines are stamped before they take the wallet's lock,
    /// so two postings a moment apart can apply in the other order than their stamps, and the last
    /// line by time alone would then answer the earlier balance. The wallet's time index has no
    /// entry-id order, so this takes the wallet's last 64 lines by then in time order (one backward
    /// seek) and the highest id among them; a line stamped back by more than 64 of the wallet's lines
    /// (a clock moved back) is missed. <paramref name="wallet"/> is the alias of a wallets row in the
    /// enclosing query; <paramref name="at"/> the instant (milliseconds) as SQL.
    /// </summary>
    public static string EntryAsOfSql(string wallet, string at) => $"""
        (SELECT MAX(y.entry_id) FROM (
            SELECT x.entry_id FROM ledger_entries x WHERE x.org_id = {wallet}.org_id AND x.wallet_id = {wallet}.wallet_id AND x.created_at <= {at}
            ORDER BY x.created_at DESC, x.entry_id DESC LIMIT 64) y)
        """;

    private sealed class Row
    {
        public long ProgramId { get; set; }
        public string ProgramName { get; set; } = "";
        public string? Currency { get; set; }
        public string Category { get; set; } = "";
        public long Balance { get; set; }
    }

    /// <summary>Every wallet of an owner: per program, plain points or alternate currency, and category.</summary>
    public static async Task<IReadOnlyList<BalanceView>> ForOwnerAsync(DbConnection c, SqlDialect dialect, long orgId, OwnerType ownerType, long ownerId,
        CancellationToken ct)
    {
        var rows = await KeptReads.QueryAsync<Row>(c, dialect, """
            SELECT w.program_id AS ProgramId, p.name AS ProgramName, cur.name AS Currency, w.category AS Category, w.balance AS Balance
            FROM wallets w
            JOIN programs p ON p.org_id = w.org_id AND p.program_id = w.program_id
            LEFT JOIN currencies cur ON cur.org_id = w.org_id AND cur.currency_id = w.currency_id
            WHERE w.org_id = @orgId AND w.owner_type = @ownerType AND w.owner_id = @ownerId
            ORDER BY w.program_id, w.currency_id, w.category
            """,
            new { orgId, ownerType = ownerType.ToWire(), ownerId }, null, ct);
        return rows.Select(r => new BalanceView(r.ProgramId, r.ProgramName, r.Currency, r.Category, new Points(r.Balance))).ToList();
    }
}
