using Dapper;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Programs;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Tiers;

/// <summary>
/// What one tier evaluation did: owners whose period had ended (evaluated), of whom so many kept
/// their tier (renewed) or lost it (downgraded); base-tier owners whose period just rolled on; and
/// upgrades the new periods' metrics supported. <see cref="RunId"/> names the run in the owners'
/// tier history (the last organization's, when several were evaluated; null when nothing was due).
/// </summary>
public sealed record TierEvaluationResult(long? RunId, DateTimeOffset AsOf, int Evaluated, int Renewed, int Downgraded, int Rolled, int Upgraded);

/// <summary>
/// The tier evaluation (background lifecycle service, <c>tiers evaluate</c> command, operator
/// endpoint): renewal and downgrade are decided here, at the end of an owner's period, and nowhere
/// else; never mid-period.
/// </summary>
/// <remarks>
/// <para>Owners are taken in key order, a bounded chunk per transaction, each locked by
/// <c>FOR UPDATE</c> (SQLite: the writer lock) and decided in memory: every period that ended by
/// asOf in turn (keep the tier if the metric reaches its renewal threshold, else move by the
/// downgrade rule), the next period starting where the last one ended and counting what was earned
/// since. A chunk takes no wallet lock, so it cannot deadlock with postings (which lock wallets,
/// then the tier row). Owners whose new period already supports a higher tier are upgraded
/// afterwards, <see cref="UpgradesPerTransaction"/> to a posting, which locks their bonus wallets
/// first and then their tier rows, like any posting.</para>
/// <para>Running it twice changes nothing: the first moved every evaluated period end past asOf.</para>
/// </remarks>
public static class TierEvaluation
{
    /// <summary>Owners decided per transaction: short transactions, few round trips.</summary>
    public const int OwnersPerTransaction = 1000;

    /// <summary>
    /// Upgrades applied per transaction after the decisions: one commit (and, on PostgreSQL, one
    /// flush to disk) for many owners rather than one each, which was most of a large run's time.
    /// </summary>
    public const int UpgradesPerTransaction = 100;

    public static async Task<TierEvaluationResult> RunAsync(LedgerDatabase db, long? orgId, DateTimeOffset asOf, DateTimeOffset now,
        string? postedBy, CancellationToken ct)
    {
        if (asOf > now) throw LedgerException.Invalid("asOf cannot be in the future: a tier is decided at the end of its period, not before.");
        var orgs = orgId is { } single
            ? [single]
            : (await db.ReadAsync(c => c.QueryAsync<long>(new CommandDefinition("SELECT org_id FROM organizations ORDER BY org_id", cancellationToken: ct)), ct)).ToList();
        long? lastRun = null;
        int evaluated = 0, renewed = 0, downgraded = 0, rolled = 0, upgraded = 0;
        foreach (var org in orgs)
        {
            long? runId = null;
            var programs = await db.ReadAsync(c => ProgramCatalog.ListAsync(c, db.Dialect, org, null, ct), ct);
            foreach (var program in programs.Where(p => p.Tiers is not null))
            {
                while (true)
                {
                    var chunk = await db.WriteAsync(async (c, tx) =>
                    {
                        var due = (await c.QueryAsync<OwnerTierRow>(new CommandDefinition(db.Dialect.Expand(
                            """
                            SELECT owner_type AS OwnerType, owner_id AS OwnerId, tier_name AS TierName, tier_since AS TierSince,
                                period_no AS PeriodNo, period_start AS PeriodStart, period_end AS PeriodEnd,
                                metric_lifetime AS MetricLifetime, metric_period AS MetricPeriod, metric_next AS MetricNext, pinned AS Pinned
                            FROM owner_tiers
                            WHERE org_id = @org AND program_id = @programId AND period_end <= @asOf
                            ORDER BY period_end, owner_type, owner_id
                            LIMIT @limit{forUpdate}
                            """),
                            new { org, programId = program.ProgramId, asOf = asOf.ToUnixTimeMilliseconds(), limit = OwnersPerTransaction },
                            tx, cancellationToken: ct))).ToList();
                        if (due.Count == 0) return (Decided: 0, Run: runId, Counts: (0, 0, 0));
                        // Taken in the chunk's transaction and kept only once it commits (a retried chunk takes it again).
                        var run = runId ?? await NextRunIdAsync(c, tx, org, ct);
                        var batch = new StatementBatch(c, tx, db.Dialect, ct);
                        var counts = (Renewed: 0, Downgraded: 0, Rolled: 0);
                        foreach (var row in due)
                        {
                            var outcome = Decide(program.Tiers!, row, asOf.ToUnixTimeMilliseconds());
                            var ownerType = LedgerNames.ParseOwner(row.OwnerType);
                            batch.Execute(
                                """
                                UPDATE owner_tiers SET tier_name = @tier, tier_since = @since, period_no = @periodNo, period_start = @start,
                                    period_end = @end, metric_period = @metricPeriod, metric_next = @metricNext, override_reason = NULL,
                                    upgrade_due = @upgradeDue, updated_at = @now
                                WHERE org_id = @org AND owner_type = @ownerType AND owner_id = @ownerId AND program_id = @programId
                                """,
                                new
                                {
                                    tier = outcome.Tier, since = outcome.Since, periodNo = outcome.PeriodNo, start = outcome.Start, end = outcome.End,
                                    metricPeriod = outcome.MetricPeriod, metricNext = 0L, upgradeDue = outcome.MayUpgrade ? 1 : 0,
                                    now = now.ToUnixTimeMilliseconds(), org,
                                    ownerType = row.OwnerType, ownerId = row.OwnerId, programId = program.ProgramId,
                                });
                            foreach (var (from, to, cause, metric, periodEnd) in outcome.Changes)
                            {
                                TierChanges.Add(batch, org, new TierChangeRecord(ownerType, row.OwnerId, program.ProgramId, from, to, cause,
                                    new Points(metric), periodEnd, now.ToUnixTimeMilliseconds(), RunId: run, PostedBy: postedBy));
                                if (cause == TierCauses.Renewal) counts.Renewed++;
                                else counts.Downgraded++;
                            }
                            if (outcome.Changes.Count == 0) counts.Rolled++;
                        }
                        await batch.RunAsync(ct);
                        return (Decided: due.Count, Run: (long?)run, Counts: (counts.Renewed, counts.Downgraded, counts.Rolled));
                    }, ct);
                    if (chunk.Decided == 0) break;
                    runId = chunk.Run;
                    evaluated += chunk.Decided;
                    renewed += chunk.Counts.Item1;
                    downgraded += chunk.Counts.Item2;
                    rolled += chunk.Counts.Item3;
                }

                // The upgrades the chunks marked (and any a run that stopped early left marked).
                while (true)
                {
                    var owners = (await db.ReadAsync(c => c.QueryAsync<(string OwnerType, long OwnerId)>(new CommandDefinition(
                        """
                        SELECT owner_type, owner_id FROM owner_tiers
                        WHERE org_id = @org AND program_id = @programId AND upgrade_due = 1
                        ORDER BY owner_type, owner_id
                        LIMIT @limit
                        """,
                        new { org, programId = program.ProgramId, limit = UpgradesPerTransaction }, cancellationToken: ct)), ct))
                        .Select(o => (Type: LedgerNames.ParseOwner(o.OwnerType), Id: o.OwnerId)).ToList();
                    if (owners.Count == 0) break;
                    var (posted, upgradeRun) = await db.WriteAsync(async (c, tx) =>
                    {
                        var posting = new Posting(c, tx, db.Dialect, org, now, postedBy, ct);
                        var fresh = await ProgramCatalog.ResolveAsync(posting, program.ProgramId, fresh: true);
                        // Every bonus wallet of the group first, in one statement (in key order), and only
                        // then the tier rows: wallets before tier rows, as every posting takes them.
                        var bonusWallets = owners.Select(o => TierAccrual.BonusWallet(fresh, o.Type, o.Id)).Where(k => k is not null).Select(k => k!.Value).ToList();
                        if (bonusWallets.Count > 0) await posting.LockWalletsAsync(bonusWallets);
                        var done = 0;
                        var run = runId;
                        foreach (var (ownerType, ownerId) in owners)
                        {
                            // Counting nothing reads the owner's row under its lock, as a posting would; a
                            // posting may have upgraded the owner meanwhile, and then there is nothing to do.
                            var standing = await TierAccrual.CountAsync(posting, fresh, ownerType, ownerId, Points.Zero);
                            await posting.ExecuteAsync(
                                "UPDATE owner_tiers SET upgrade_due = 0 WHERE org_id = @org AND owner_type = @ownerType AND owner_id = @ownerId AND program_id = @programId",
                                new { org, ownerType = ownerType.ToWire(), ownerId, programId = program.ProgramId });
                            if (standing is not { Crossed: true }) continue;
                            run ??= await NextRunIdAsync(c, tx, org, ct);
                            await TierAccrual.UpgradeAsync(posting, standing, causedByEventId: null, run);
                            done++;
                        }
                        return (done, run);
                    }, ct);
                    upgraded += posted;
                    runId = upgradeRun;
                }
            }
            lastRun = runId ?? lastRun;
        }
        Telemetry.LedgerTelemetry.TierChanges(renewed, downgraded, upgraded);
        return new TierEvaluationResult(lastRun, asOf, evaluated, renewed, downgraded, rolled, upgraded);
    }

    private sealed record Outcome(string Tier, long Since, long PeriodNo, long Start, long End, long MetricPeriod, bool MayUpgrade,
        List<(string From, string To, string Cause, long Metric, long PeriodEnd)> Changes);

    /// <summary>
    /// Every period of <paramref name="row"/> that ended by <paramref name="asOfMs"/>, decided in
    /// turn; the first takes the period's metric, a later one (a run that missed whole periods) what
    /// was earned after the first ended, and any after that nothing.
    /// </summary>
    private static Outcome Decide(TierPolicy policy, OwnerTierRow row, long asOfMs)
    {
        var level = policy.LevelOf(row.TierName);
        var since = row.TierSince;
        var (periodNo, start, end) = (row.PeriodNo, row.PeriodStart, row.PeriodEnd);
        var (metricPeriod, metricNext) = (row.MetricPeriod, row.MetricNext);
        var changes = new List<(string, string, string, long, long)>();
        // A pinned owner keeps its tier (an override said so): its periods only roll on.
        var pinned = row.Pinned != 0;
        while (end <= asOfMs)
        {
            var newStart = end;
            var newEnd = policy.Period.After(DateTimeOffset.FromUnixTimeMilliseconds(newStart)).ToUnixTimeMilliseconds();
            if (level > 0 && !pinned)
            {
                var metric = policy.Metric.Window == TierMetric.Lifetime ? row.MetricLifetime : metricPeriod;
                var next = policy.Evaluate(level, new Points(metric));
                changes.Add((policy.Tiers[level].Name, policy.Tiers[next].Name, next == level ? TierCauses.Renewal : TierCauses.Downgrade, metric, newEnd));
                if (next != level) since = newStart;
                level = next;
            }
            (periodNo, start, end) = (periodNo + 1, newStart, newEnd);
            (metricPeriod, metricNext) = (metricNext, 0);
        }
        var windowMetric = policy.Metric.Window == TierMetric.Lifetime ? row.MetricLifetime : metricPeriod;
        return new Outcome(policy.Tiers[level].Name, since, periodNo, start, end, metricPeriod,
            !pinned && policy.LevelReached(new Points(windowMetric)) > level, changes);
    }

    private static Task<long> NextRunIdAsync(System.Data.Common.DbConnection c, System.Data.Common.DbTransaction tx, long org, CancellationToken ct) =>
        c.ExecuteScalarAsync<long>(
            new CommandDefinition("""
            INSERT INTO id_counters (org_id, name, last_value) VALUES (@org, 'tier_run', 1)
            ON CONFLICT (org_id, name) DO UPDATE SET last_value = id_counters.last_value + 1
            RETURNING last_value
            """,
            new { org }, tx, cancellationToken: ct));
}
