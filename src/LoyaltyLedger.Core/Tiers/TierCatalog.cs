using LoyaltyLedger.Ledger;
using LoyaltyLedger.Programs;

namespace LoyaltyLedger.Tiers;

/// <summary>Sets a program's tier policy (the admin's <c>PUT /v1/programs/{id}/tiers</c>).</summary>
public static class TierCatalog
{
    /// <summary>
    /// Validates and stores <paramref name="policy"/> as the program's tiers, replacing any before.
    /// Members keep their tiers and counters; so a replacement may not drop a tier somebody holds,
    /// nor count something else once members have counted (their counters would mean another thing).
    /// </summary>
    public static async Task<TierPolicy> SetAsync(Posting posting, long programId, TierPolicy? policy)
    {
        if (policy is null) throw TierPolicy.Invalid("A tier policy is required.");
        policy.Validate();
        var normalized = policy.Normalized();
        var program = await ProgramCatalog.ResolveAsync(posting, programId, fresh: true);
        if (normalized.Metric.Kind == TierMetric.CurrencyUnits && program.Currency(normalized.Metric.Currency!) is null)
            throw new LedgerException("currency_not_found", $"Program {programId} has no alternate currency '{normalized.Metric.Currency}' to count.", 404);

        if (program.Tiers is { } current)
        {
            var held = (await posting.QueryAsync<string>(
                "SELECT DISTINCT tier_name FROM owner_tiers WHERE org_id = @org AND program_id = @programId",
                new { org = posting.OrgId, programId })).ToList();
            var dropped = held.Where(name => !normalized.Tiers.Any(t => string.Equals(t.Name, name, StringComparison.OrdinalIgnoreCase))).ToList();
            if (dropped.Count > 0)
                throw new LedgerException(TierErrors.TierInUse,
                    $"Members hold {string.Join(", ", dropped.Select(d => $"'{d}'"))}: keep the tier in the list (an override or evaluation moves them first).", 409);
            var sameMetric = current.Metric.Kind == normalized.Metric.Kind
                && string.Equals(current.Metric.Currency, normalized.Metric.Currency, StringComparison.OrdinalIgnoreCase);
            if (!sameMetric && held.Count > 0)
                throw new LedgerException(TierErrors.TierInUse,
                    "Members' tiers count the current metric; a program's metric cannot change once members have counted toward it.", 409);
        }

        posting.ChangeCatalog();
        await posting.ExecuteAsync(
            """
            INSERT INTO tier_policies (org_id, program_id, policy, base_tier, updated_at) VALUES (@org, @programId, @policy, @base, @now)
            ON CONFLICT (org_id, program_id) DO UPDATE SET policy = excluded.policy, base_tier = excluded.base_tier, updated_at = excluded.updated_at
            """,
            new { org = posting.OrgId, programId, policy = normalized.ToJson(), @base = normalized.Base.Name, now = posting.NowMs });
        return normalized;
    }
}
