namespace LoyaltyLedger.Ledger;

/// <summary>A ledger line as the native API shows it after a posting, with the tier its owner held (null when the program has no tiers).</summary>
public sealed record EntryView(
    long EntryId,
    string OwnerType,
    long OwnerId,
    long ProgramId,
    string? Currency,
    string Category,
    string EntryType,
    Points Points,
    Points BalanceAfter,
    DateTimeOffset? ExpiresAt,
    string? Tier = null)
{
    /// <summary>A posted line as shown, with its alternate currency's name (null for the program's plain points).</summary>
    public static EntryView Of(PostedEntry e, string? currency) => new(
        e.EntryId, e.Key.OwnerType.ToWire(), e.Key.OwnerId, e.Key.ProgramId, currency, e.Key.Category.ToWire(),
        e.Type.ToWire(), e.Points, e.BalanceAfter, e.ExpiresAt is { } x ? DateTimeOffset.FromUnixTimeMilliseconds(x) : null, e.Tier);
}

/// <summary>
/// A posting as answered: its event and lines, and the upgrade it made when it crossed a tier
/// threshold (the bonus, if any, is its own event).
/// </summary>
public sealed record PostingResult(long EventId, string EventName, long? BillId, IReadOnlyList<EntryView> Entries, TierUpgrade? TierUpgrade = null);

/// <summary>The tier change a posting made: from and to which tier, and the upgrade bonus event with its lines, if the tiers passed pay one.</summary>
public sealed record TierUpgrade(string FromTier, string ToTier, long? BonusEventId, IReadOnlyList<EntryView> BonusEntries);
