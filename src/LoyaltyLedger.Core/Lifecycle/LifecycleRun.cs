using Dapper;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Programs;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Lifecycle;

/// <summary>
/// What one lifecycle run did: promised lots converted, wallets expired, and points.expiring
/// notices sent (wallets whose points come due within their program's notice window).
/// </summary>
public sealed record LifecycleRunResult(DateTimeOffset AsOf, int Conversions, int Expiries, IReadOnlyList<PostingResult> Events, int ExpiryNotices = 0);

/// <summary>
/// The periodic lifecycle run (background service, <c>expire</c> command, operator endpoint):
/// converts PROMISED lots whose window has passed into main points, then expires what is due, then
/// announces (points.expiring) what comes due within each program's notice window from now.
/// </summary>
/// <remarks>
/// Candidates are found outside any transaction, then each wallet (or promised lot) is settled by a
/// posting of its own that locks the wallet and looks again, so the run competes safely with postings
/// and with another run, and running it twice writes nothing more. The postings of up to
/// <see cref="PostingsInFlight"/> owners are issued at once, through group commit
/// (<see cref="LedgerDatabase.WriteBatchedAsync{T}"/>), so a run over many wallets costs a commit per
/// batch, not one per wallet; a batch holds its postings' locks until it commits. The postings run
/// without the caller's cancellation token: they may share a connection and a transaction with other
/// writes, which a cancelled statement would fail too (the token stops the run between postings).
/// </remarks>
public static class LifecycleRun
{
    public static async Task<LifecycleRunResult> RunAsync(LedgerDatabase db, long? orgId, DateTimeOffset asOf, DateTimeOffset now,
        string? postedBy, CancellationToken ct)
    {
        if (asOf > now) throw LedgerException.Invalid("asOf cannot be in the future: that would expire points before their date.");
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var orgs = orgId is { } single
            ? [single]
            : (await db.ReadAsync(c => c.QueryAsync<long>(new CommandDefinition("SELECT org_id FROM organizations ORDER BY org_id", cancellationToken: ct)), ct)).ToList();
        var events = new List<PostingResult>();
        var conversions = 0;
        var expiries = 0;
        var notices = 0;
        var asOfMs = asOf.ToUnixTimeMilliseconds();
        foreach (var org in orgs)
        {
            // Without the caller's token: see the remarks above. Programs through the process's catalog.
            Posting Post(System.Data.Common.DbConnection c, System.Data.Common.DbTransaction tx) =>
                new(c, tx, db.Dialect, org, now, postedBy, CancellationToken.None) { Catalog = db.Catalog };

            var promised = (await db.ReadAsync(c => c.QueryAsync<(long LotId, string OwnerType, long OwnerId)>(new CommandDefinition(db.Dialect.Expand(
                """
                SELECT l.lot_id, w.owner_type, w.owner_id FROM lots l JOIN wallets w ON w.org_id = l.org_id AND w.wallet_id = l.wallet_id
                WHERE w.org_id = @org AND w.category = 'PROMISED' AND l.remaining > 0 AND l.is_debt = 0 AND l.expires_at <= @asOf
                ORDER BY l.expires_at, l.lot_id
                """), new { org, asOf = asOfMs }, cancellationToken: ct)), ct)).ToList();
            var converted = await PostByOwnerAsync(promised, lot => (lot.OwnerType, lot.OwnerId), lot => db.WriteBatchedAsync((c, tx) =>
                HeldPoints.ConvertDueAsync(Post(c, tx), lot.LotId, asOf), ct), ct);
            foreach (var conversion in converted)
            {
                if (conversion is null) continue;
                conversions++;
                events.Add(conversion);
            }

            var due = await DueWalletsAsync(db, org, asOf, ct);
            var expired = await PostByOwnerAsync(due, key => (key.OwnerType.ToWire(), key.OwnerId), key => db.WriteBatchedAsync(async (c, tx) =>
            {
                var posting = Post(c, tx);
                var program = await ProgramCatalog.ResolveForWalletAsync(posting, key.ProgramId, key.CurrencyId);
                await posting.LockWalletsAsync([key]);
                return await LotExpiry.ExpireDueAsync(posting, program, key, asOf);
            }, ct), ct);
            foreach (var expiry in expired)
            {
                if (expiry is null) continue;
                expiries++;
                events.Add(expiry);
            }

            // From now, whatever asOf says: a notice is about what is still ahead.
            notices += await ExpiryNotices.AnnounceAsync(db, org, now, ct);
        }
        Telemetry.LedgerTelemetry.ConvertedLots.Add(conversions);
        Telemetry.LedgerTelemetry.ExpiredWallets.Add(expiries);
        Telemetry.LedgerTelemetry.ExpiredThousandths.Add(events.Where(e => e.EventName == EventNames.PointsExpiry)
            .SelectMany(e => e.Entries).Sum(x => Math.Abs(x.Points.Thousandths)));
        Telemetry.LedgerTelemetry.ExpiryRunDuration.Record(System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds);
        return new LifecycleRunResult(asOf, conversions, expiries, events, notices);
    }

    /// <summary>
    /// The most owners whose postings a run has in flight at once. Issued together, the postings share
    /// transactions and commits (SQLite's writer, PostgreSQL's write lanes) instead of one commit each;
    /// a bound, so that an API write arriving meanwhile waits behind at most this many short postings.
    /// </summary>
    public const int PostingsInFlight = 16;

    /// <summary>
    /// Runs <paramref name="post"/> for each item: one owner's items one after another, in their
    /// order, and up to <see cref="PostingsInFlight"/> owners at once; the results in the items' order.
    /// </summary>
    /// <remarks>
    /// By owner, not by wallet: every posting of an owner also locks the owner's rows beside its
    /// wallets (its event counter, its tier), and one owner's postings in two lanes' open transactions
    /// could wait on each other (two currencies' wallets of one customer, each taken by a lane that
    /// already holds the other's counter). Postings of different owners lock nothing in common.
    /// </remarks>
    private static async Task<PostingResult?[]> PostByOwnerAsync<TItem>(IReadOnlyList<TItem> items, Func<TItem, (string Type, long Id)> ownerOf,
        Func<TItem, Task<PostingResult?>> post, CancellationToken ct)
    {
        var results = new PostingResult?[items.Count];
        var owners = Enumerable.Range(0, items.Count).GroupBy(i => ownerOf(items[i])).Select(g => g.ToList()).ToList();
        await Parallel.ForEachAsync(owners, new ParallelOptions { MaxDegreeOfParallelism = PostingsInFlight, CancellationToken = ct },
            async (indexes, stop) =>
            {
                foreach (var i in indexes)
                {
                    stop.ThrowIfCancellationRequested();
                    results[i] = await post(items[i]);
                }
            });
        return results;
    }

    /// <summary>Main wallets with a dated lot due, or whose WHOLE_BALANCE period may have run out.</summary>
    private static async Task<IReadOnlyList<WalletKey>> DueWalletsAsync(LedgerDatabase db, long org, DateTimeOffset asOf, CancellationToken ct)
    {
        return await db.ReadAsync(async c =>
        {
            var keys = new HashSet<WalletKey>();
            var dated = await c.QueryAsync<(string OwnerType, long OwnerId, long ProgramId, long CurrencyId)>(
                new CommandDefinition("""
                SELECT DISTINCT w.owner_type, w.owner_id, w.program_id, w.currency_id FROM lots l JOIN wallets w ON w.org_id = l.org_id AND w.wallet_id = l.wallet_id
                WHERE w.org_id = @org AND w.category = 'REGULAR' AND l.remaining > 0 AND l.is_debt = 0 AND l.expires_at <= @asOf
                """, new { org, asOf = asOf.ToUnixTimeMilliseconds() }, cancellationToken: ct));
            foreach (var w in dated)
                keys.Add(new WalletKey(LedgerNames.ParseOwner(w.OwnerType), w.OwnerId, w.ProgramId, w.CurrencyId, PointCategory.Regular));

            foreach (var program in await ProgramCatalog.ListAsync(c, db.Dialect, org, null, ct))
            {
                var policies = new List<(long CurrencyId, ExpiryPolicy Policy)> { (WalletKey.PlainPoints, program.Expiry) };
                policies.AddRange(program.Currencies.Select(cur => (cur.CurrencyId, cur.Expiry)));
                foreach (var (currencyId, policy) in policies.Where(p => p.Policy.ExpiresWholeBalance))
                {
                    // A SQL bound that can only let too many through; the exact date is checked per wallet.
                    var bound = (asOf - policy.MinimumPeriod).ToUnixTimeMilliseconds();
                    var idle = await c.QueryAsync<(string OwnerType, long OwnerId, long LastActivityAt)>(
                        new CommandDefinition("""
                        SELECT owner_type, owner_id, last_activity_at FROM wallets
                        WHERE org_id = @org AND program_id = @programId AND currency_id = @currencyId AND category = 'REGULAR'
                            AND balance > 0 AND last_activity_at <= @bound
                        """, new { org, programId = program.ProgramId, currencyId, bound }, cancellationToken: ct));
                    foreach (var w in idle)
                    {
                        if (policy.WholeBalanceExpiry(DateTimeOffset.FromUnixTimeMilliseconds(w.LastActivityAt)) <= asOf)
                            keys.Add(new WalletKey(LedgerNames.ParseOwner(w.OwnerType), w.OwnerId, program.ProgramId, currencyId, PointCategory.Regular));
                    }
                }
            }
            return keys.Order().ToList();
        }, ct);
    }
}
