using System.Data.Common;
using Dapper;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Programs;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Tiers;

/// <summary>
/// Where an owner stands in a program's tiers: the tier and its multiplier, the metric (the value
/// the window counts, and both counters), what the next tier needs, and when the current period ends
/// and what keeping the tier then needs. <see cref="Since"/> is null for an owner still at the base
/// tier with no activity counted yet.
/// </summary>
public sealed record TierStatus(
    string OwnerType,
    long OwnerId,
    long ProgramId,
    string Tier,
    Points Multiplier,
    DateTimeOffset? Since,
    bool Pinned,
    string? OverrideReason,
    TierMetricStatus Metric,
    NextTierStatus? NextTier,
    TierRenewalStatus Renewal);

/// <summary>The metric: what it counts, over which window, its value in that window, and the lifetime and current-period counters.</summary>
public sealed record TierMetricStatus(string Kind, string? Currency, string Window, Points Value, Points Lifetime, Points Period);

/// <summary>The next tier up, its entry threshold, and how much more of the metric reaches it.</summary>
public sealed record NextTierStatus(string Name, Points Threshold, Points Missing);

/// <summary>
/// The current period (its start and its end, the evaluation date), and what keeping the tier at
/// that date needs: the metric at least <see cref="KeepsWith"/>, <see cref="Missing"/> more than now.
/// </summary>
public sealed record TierRenewalStatus(DateTimeOffset Date, DateTimeOffset PeriodStart, Points KeepsWith, Points Missing);

/// <summary>One row of an owner's tier history, with the posting (eventId) or evaluation run (runId) that caused it.</summary>
public sealed record TierChangeView(
    long ChangeId,
    long ProgramId,
    string FromTier,
    string ToTier,
    string Cause,
    long? EventId,
    long? RunId,
    string? Reason,
    Points Metric,
    DateTimeOffset RenewalDate,
    DateTimeOffset ChangedAt,
    string? PostedBy);

/// <summary>An owner's standing in one program that has tiers, with its tier history there (newest first), as the support console shows it.</summary>
public sealed record OwnerTier(LoyaltyProgram Program, TierStatus Status, IReadOnlyList<TierChangeView> History);

public static class TierReads
{
    /// <summary>The most history rows <see cref="ForOwnerAsync"/> reads (the newest); the history API answers all of them.</summary>
    public const int OwnerHistoryLimit = 100;

    private sealed class HistoryRow
    {
        public long ChangeId { get; set; }
        public long ProgramId { get; set; }
        public string FromTier { get; set; } = "";
        public string ToTier { get; set; } = "";
        public string Cause { get; set; } = "";
        public long? EventId { get; set; }
        public long? RunId { get; set; }
        public string? Reason { get; set; }
        public long Metric { get; set; }
        public long PeriodEnd { get; set; }
        public long ChangedAt { get; set; }
        public string? PostedBy { get; set; }
    }

    /// <summary>The program a tier read or override is about: the one named, else the default; refused when it has no tiers.</summary>
    public static async Task<LoyaltyProgram> TieredProgramAsync(DbConnection c, SqlDialect dialect, long orgId, long? programId, DbTransaction? tx, IProgramCache? cache,
        CancellationToken ct)
    {
        var program = await ProgramCatalog.ResolveAsync(c, dialect, orgId, programId, tx, cache, ct);
        return program.Tiers is null
            ? throw new LedgerException(TierErrors.TiersNotConfigured, $"Program {program.ProgramId} has no tiers: PUT /v1/programs/{program.ProgramId}/tiers sets them.", 404)
            : program;
    }

    public static async Task<TierStatus> StatusAsync(DbConnection c, SqlDialect dialect, long orgId, OwnerType ownerType, long ownerId, LoyaltyProgram program,
        DateTimeOffset now, DbTransaction? tx, CancellationToken ct)
    {
        var row = await KeptReads.QuerySingleOrDefaultAsync<OwnerTierRow>(c, dialect,
            $"SELECT {OwnerTierColumns} FROM owner_tiers WHERE org_id = @orgId AND owner_type = @ownerType AND owner_id = @ownerId AND program_id = @programId",
            new { orgId, ownerType = ownerType.ToWire(), ownerId, programId = program.ProgramId }, tx, ct);
        return Status(ownerType, ownerId, program, row, now);
    }

    /// <summary>
    /// The owner's standing and recent history (newest first, at most <see cref="OwnerHistoryLimit"/>
    /// rows) in each of <paramref name="programs"/> that has tiers: one round trip of two indexed
    /// reads of the owner's rows, none when no program has tiers.
    /// </summary>
    public static async Task<IReadOnlyList<OwnerTier>> ForOwnerAsync(DbConnection c, long orgId, OwnerType ownerType, long ownerId,
        IReadOnlyList<LoyaltyProgram> programs, DateTimeOffset now, CancellationToken ct)
    {
        var tiered = programs.Where(p => p.Tiers is not null).ToList();
        if (tiered.Count == 0) return [];
        await using var grid = await c.QueryMultipleAsync(
            new CommandDefinition($"""
            SELECT program_id AS ProgramId, {OwnerTierColumns} FROM owner_tiers
            WHERE org_id = @orgId AND owner_type = @ownerType AND owner_id = @ownerId;
            SELECT {HistoryColumns} FROM tier_changes
            WHERE org_id = @orgId AND owner_type = @ownerType AND owner_id = @ownerId
            ORDER BY change_id DESC LIMIT @take;
            """,
            new { orgId, ownerType = ownerType.ToWire(), ownerId, take = OwnerHistoryLimit }, cancellationToken: ct));
        var rows = (await grid.ReadAsync<OwnerTierRow>()).ToDictionary(r => r.ProgramId);
        var history = (await grid.ReadAsync<HistoryRow>()).Select(View).ToLookup(h => h.ProgramId);
        return tiered.Select(p => new OwnerTier(p, Status(ownerType, ownerId, p, rows.GetValueOrDefault(p.ProgramId), now), history[p.ProgramId].ToList()))
            .ToList();
    }

    private const string OwnerTierColumns =
        """
        tier_name AS TierName, tier_since AS TierSince, period_no AS PeriodNo, period_start AS PeriodStart, period_end AS PeriodEnd,
            metric_lifetime AS MetricLifetime, metric_period AS MetricPeriod, metric_next AS MetricNext, pinned AS Pinned,
            override_reason AS OverrideReason
        """;

    private const string HistoryColumns =
        """
        change_id AS ChangeId, program_id AS ProgramId, from_tier AS FromTier, to_tier AS ToTier, cause AS Cause, event_id AS EventId,
            run_id AS RunId, reason AS Reason, metric AS Metric, period_end AS PeriodEnd, changed_at AS ChangedAt, posted_by AS PostedBy
        """;

    /// <summary>Where an owner stands, from its tier row (null: no activity counted yet, so the base tier and a period around now).</summary>
    private static TierStatus Status(OwnerType ownerType, long ownerId, LoyaltyProgram program, OwnerTierRow? row, DateTimeOffset now)
    {
        var policy = program.Tiers!;
        var (start, end) = row is null
            ? policy.Period.Around(now)
            : (DateTimeOffset.FromUnixTimeMilliseconds(row.PeriodStart), DateTimeOffset.FromUnixTimeMilliseconds(row.PeriodEnd));
        var level = policy.LevelOf(row?.TierName);
        var tier = policy.Tiers[level];
        var lifetime = new Points(row?.MetricLifetime ?? 0);
        var period = new Points(row?.MetricPeriod ?? 0);
        var value = policy.Metric.Window == TierMetric.Lifetime ? lifetime : period;
        NextTierStatus? next = level + 1 < policy.Tiers.Count
            ? new NextTierStatus(policy.Tiers[level + 1].Name, policy.Tiers[level + 1].Threshold, Points.Max(Points.Zero, policy.Tiers[level + 1].Threshold - value))
            : null;
        var keeps = level == 0 ? Points.Zero : policy.KeepNeeds(level);
        return new TierStatus(ownerType.ToWire(), ownerId, program.ProgramId, tier.Name, tier.Multiplier ?? Points.FromWhole(1),
            row is null ? null : DateTimeOffset.FromUnixTimeMilliseconds(row.TierSince), row?.Pinned is 1, row?.OverrideReason,
            new TierMetricStatus(policy.Metric.Kind, policy.Metric.Currency, policy.Metric.Window, value, lifetime, period),
            next, new TierRenewalStatus(end, start, keeps, Points.Max(Points.Zero, keeps - value)));
    }

    /// <summary>An owner's tier history, oldest first; one program's when <paramref name="programId"/> is given.</summary>
    public static async Task<IReadOnlyList<TierChangeView>> HistoryAsync(DbConnection c, SqlDialect dialect, long orgId, OwnerType ownerType, long ownerId,
        long? programId, CancellationToken ct)
    {
        var rows = await KeptReads.QueryAsync<HistoryRow>(c, dialect, $"""
            SELECT {HistoryColumns}
            FROM tier_changes
            WHERE org_id = @orgId AND owner_type = @ownerType AND owner_id = @ownerId{(programId is null ? "" : " AND program_id = @programId")}
            ORDER BY change_id
            """,
            new { orgId, ownerType = ownerType.ToWire(), ownerId, programId }, null, ct);
        return rows.Select(View).ToList();
    }

    private static TierChangeView View(HistoryRow r) =>
        new(r.ChangeId, r.ProgramId, r.FromTier, r.ToTier, r.Cause, r.EventId, r.RunId, r.Reason,
            new Points(r.Metric), DateTimeOffset.FromUnixTimeMilliseconds(r.PeriodEnd), DateTimeOffset.FromUnixTimeMilliseconds(r.ChangedAt),
            r.PostedBy);
}
