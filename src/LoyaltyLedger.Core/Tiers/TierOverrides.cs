using LoyaltyLedger.Customers;
using LoyaltyLedger.Groups;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Programs;

namespace LoyaltyLedger.Tiers;

/// <summary>
/// An admin's override of an owner's tier, with its mandatory reason. It is kept until the next
/// evaluation decides on the owner as on anyone else, or, when pinned, until an override that is
/// not pinned: a pinned owner is skipped by evaluations and by automatic upgrades.
/// </summary>
public sealed record NewTierOverride(string Tier, string Reason, long? ProgramId = null, bool Pinned = false);

public static class TierOverrides
{
    public const int MaxReasonLength = 500;

    /// <remarks>
    /// No bonus (an override is a correction, not an upgrade earned) and no new period: the override
    /// lasts until the evaluation date the owner already had. The owner's tier row is locked by its
    /// upsert; an override locks no wallet, so it cannot deadlock with postings.
    /// </remarks>
    public static async Task<TierStatus> OverrideAsync(Posting posting, OwnerType ownerType, long ownerId, NewTierOverride request)
    {
        var reason = request?.Reason?.Trim();
        if (string.IsNullOrEmpty(reason)) throw LedgerException.Invalid("A tier override needs a reason.");
        if (reason.Length > MaxReasonLength) throw LedgerException.Invalid($"A reason is at most {MaxReasonLength} characters.");
        if (string.IsNullOrWhiteSpace(request!.Tier)) throw LedgerException.Invalid("A tier override names the tier.");
        if (ownerType == OwnerType.Customer) await CustomerDirectory.RequireAsync(posting, ownerId);
        else await GroupDirectory.RequireAsync(posting, ownerId);
        var program = await posting.WithConnectionAsync((conn, tx) => TierReads.TieredProgramAsync(conn, posting.Dialect, posting.OrgId, request.ProgramId, tx, cache: null, posting.Cancellation));
        var policy = program.Tiers!;
        var target = policy.Tiers.FirstOrDefault(t => string.Equals(t.Name, request.Tier.Trim(), StringComparison.OrdinalIgnoreCase))
            ?? throw new LedgerException(TierErrors.TierNotFound,
                $"Program {program.ProgramId} has no tier '{request.Tier}' (it has {string.Join(", ", policy.Tiers.Select(t => t.Name))}).", 404);

        var standing = (await TierAccrual.CountAsync(posting, program, ownerType, ownerId, Points.Zero))!;
        var batch = posting.Batch();
        batch.Execute(
            """
            UPDATE owner_tiers SET tier_name = @tier, tier_since = @now, pinned = @pinned, override_reason = @reason, updated_at = @now
            WHERE org_id = @org AND owner_type = @ownerType AND owner_id = @ownerId AND program_id = @programId
            """,
            new
            {
                tier = target.Name, now = posting.NowMs, pinned = request.Pinned ? 1 : 0, reason, org = posting.OrgId,
                ownerType = ownerType.ToWire(), ownerId, programId = program.ProgramId,
            });
        TierChanges.Add(batch, posting.OrgId, new TierChangeRecord(ownerType, ownerId, program.ProgramId, standing.Tier.Name, target.Name,
            TierCauses.Override, standing.Metric, standing.PeriodEnd, posting.NowMs, Reason: reason, PostedBy: posting.PostedBy));
        await batch.RunAsync();
        return await posting.WithConnectionAsync((conn, tx) => TierReads.StatusAsync(conn, posting.Dialect, posting.OrgId, ownerType, ownerId, program, posting.Now, tx, posting.Cancellation));
    }
}
