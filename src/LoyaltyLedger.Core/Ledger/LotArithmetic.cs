namespace LoyaltyLedger.Ledger;

/// <summary>
/// The posting rules for a wallet's lots, on values alone: the order a debit takes open lots in, and
/// how much it takes from each. <see cref="Posting"/> applies them to the lots it reads under the
/// wallet's lock; the seeder (<c>OrganizationSeeder</c>) to the lots it generates in memory, so a
/// seeded ledger is the ledger that postings would have written.
/// </summary>
public static class LotArithmetic
{
    /// <summary>
    /// The order a debit takes open lots in: the earliest expiry first, lots that never expire last,
    /// and between lots of one date the older (lower id) first. The SQL that reads a wallet's open
    /// lots orders them the same way (<see cref="DebitOrderSql"/>).
    /// </summary>
    public static readonly IComparer<OpenLot> DebitOrder = Comparer<OpenLot>.Create((a, b) =>
    {
        if (a.ExpiresAt != b.ExpiresAt)
        {
            if (a.ExpiresAt is null) return 1;
            if (b.ExpiresAt is null) return -1;
            return a.ExpiresAt.Value.CompareTo(b.ExpiresAt.Value);
        }
        return a.LotId.CompareTo(b.LotId);
    });

    /// <summary><see cref="DebitOrder"/> as an ORDER BY over the lots table's columns.</summary>
    public const string DebitOrderSql = "CASE WHEN expires_at IS NULL THEN 1 ELSE 0 END, expires_at, lot_id";

    /// <summary>
    /// Takes <paramref name="points"/> from <paramref name="lots"/> in the order given (a wallet's
    /// open lots in <see cref="DebitOrder"/>, or the exact lots an expiry takes), each lot giving at
    /// most what it holds, and stops reading lots once the points are covered. The shortfall is what
    /// no lot covered: the wallet's debt, where a negative balance is allowed; zero otherwise.
    /// </summary>
    public static (IReadOnlyList<ConsumedLot> Taken, Points Shortfall) Take(IEnumerable<OpenLot> lots, Points points)
    {
        if (!points.IsPositive) throw new ArgumentOutOfRangeException(nameof(points), points, "A debit takes a positive number of points.");
        var taken = new List<ConsumedLot>();
        var left = points;
        foreach (var lot in lots)
        {
            if (!lot.Remaining.IsPositive) continue;
            var take = Points.Min(left, lot.Remaining);
            taken.Add(new ConsumedLot(lot.LotId, take, lot.ExpiresAt));
            left -= take;
            if (!left.IsPositive) break;
        }
        return (taken, left);
    }
}

/// <summary>An open lot of a wallet as a debit sees it: what it still holds and when that expires (null: never).</summary>
public readonly record struct OpenLot(long LotId, Points Remaining, long? ExpiresAt);
