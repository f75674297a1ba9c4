using System.Data.Common;
using Dapper;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Programs;

/// <summary>Creates and reads programs and their alternate currencies.</summary>
public static class ProgramCatalog
{
    private sealed class ProgramRow
    {
        public long ProgramId { get; set; }
        public string Name { get; set; } = "";
        public string? Concept { get; set; }
        public long EarnPerUnit { get; set; }
        public long AllowNegativeBalance { get; set; }
        public string ExpiryPolicy { get; set; } = "";
        public long IsDefault { get; set; }
        public long? PromisedDays { get; set; }
        public long? ExpiryNoticeDays { get; set; }
    }

    private sealed class CurrencyRow
    {
        public long CurrencyId { get; set; }
        public long ProgramId { get; set; }
        public string Name { get; set; } = "";
        public long EarnPerUnit { get; set; }
        public string ExpiryPolicy { get; set; } = "";
    }

    public static async Task<IReadOnlyList<LoyaltyProgram>> ListAsync(DbConnection connection, SqlDialect dialect, long orgId, DbTransaction? tx, CancellationToken ct)
    {
        var programs = await KeptReads.QueryAsync<ProgramRow>(connection, dialect,
            "SELECT program_id, name, concept, earn_per_unit, allow_negative_balance, expiry_policy, is_default, promised_days, expiry_notice_days FROM programs WHERE org_id = @orgId ORDER BY program_id",
            new { orgId }, tx, ct);
        var currencies = (await KeptReads.QueryAsync<CurrencyRow>(connection, dialect,
            "SELECT currency_id, program_id, name, earn_per_unit, expiry_policy FROM currencies WHERE org_id = @orgId ORDER BY currency_id",
            new { orgId }, tx, ct)).ToLookup(c => c.ProgramId);
        var tiers = (await KeptReads.QueryAsync<(long ProgramId, string Policy)>(connection, dialect,
            "SELECT program_id, policy FROM tier_policies WHERE org_id = @orgId", new { orgId }, tx, ct))
            .ToDictionary(t => t.ProgramId, t => TierPolicy.FromJson(t.Policy));
        return programs.Select(p => new LoyaltyProgram
        {
            ProgramId = p.ProgramId,
            Name = p.Name,
            Concept = p.Concept,
            EarnRate = new Points(p.EarnPerUnit),
            AllowNegativeBalance = p.AllowNegativeBalance != 0,
            Expiry = ExpiryPolicy.FromJson(p.ExpiryPolicy),
            IsDefault = p.IsDefault != 0,
            PromisedDays = (int?)p.PromisedDays,
            ExpiryNoticeDays = (int?)p.ExpiryNoticeDays ?? LoyaltyProgram.DefaultExpiryNoticeDays,
            Currencies = currencies[p.ProgramId].Select(c => new AlternateCurrency
            {
                CurrencyId = c.CurrencyId,
                ProgramId = c.ProgramId,
                Name = c.Name,
                EarnRate = new Points(c.EarnPerUnit),
                Expiry = ExpiryPolicy.FromJson(c.ExpiryPolicy),
            }).ToList(),
            Tiers = tiers.GetValueOrDefault(p.ProgramId),
        }).ToList();
    }

    /// <summary>
    /// The organization's programs through the server's cache (see <see cref="IProgramCache"/>): from
    /// memory when read within the last second, else from the database.
    /// </summary>
    public static Task<IReadOnlyList<LoyaltyProgram>> ListAsync(DbConnection connection, SqlDialect dialect, long orgId, DbTransaction? tx, IProgramCache? cache,
        CancellationToken ct) =>
        ReadThroughAsync(connection, dialect, orgId, tx, cache, _ => true, ct);

    /// <summary>
    /// The organization's programs through <paramref name="cache"/>, for a read that holds no
    /// connection (one through the read pipeline): the cached list, or else one read of its own that
    /// every caller missing the list at the same moment waits for (<see cref="IProgramCache.ProgramsAsync"/>).
    /// </summary>
    public static Task<IReadOnlyList<LoyaltyProgram>> ListSharedAsync(LedgerDatabase database, long orgId, IProgramCache cache, CancellationToken ct) =>
        cache.ProgramsAsync(orgId, () => database.ReadAsync(
            c => ListAsync(c, database.Dialect, orgId, null, cache, CancellationToken.None), CancellationToken.None)).WaitAsync(ct);

    /// <summary>
    /// The cached list when it has what the caller needs, else the database's (which then replaces
    /// the cached one). Something missing from the cached list may be newer than the list (created
    /// through another server process), so the database decides before it is called unknown; a list
    /// just read from the database is never read twice.
    /// </summary>
    private static async Task<IReadOnlyList<LoyaltyProgram>> ReadThroughAsync(DbConnection connection, SqlDialect dialect, long orgId, DbTransaction? tx,
        IProgramCache? cache, Func<IReadOnlyList<LoyaltyProgram>, bool> satisfies, CancellationToken ct)
    {
        if (cache?.Programs(orgId) is { } cached && satisfies(cached)) return cached;
        var loadedAt = ICatalogCache.Now();
        var programs = await ListAsync(connection, dialect, orgId, tx, ct);
        // A replica may not have replayed a change this process just made: what it says answers the
        // read that asked, and is not kept for the postings that read the cache too.
        // Inside a write, kept once it commits: a program it (or a batched neighbour) created may yet be rolled back.
        if (!ReadReplicas.Serves(connection) && cache is not null) CommitHooks.AfterCommit(tx, () => cache.SetPrograms(orgId, programs, loadedAt));
        return programs;
    }

    /// <summary>A program by id, through the cache when one is given.</summary>
    public static async Task<LoyaltyProgram?> FindAsync(DbConnection connection, SqlDialect dialect, long orgId, long programId, DbTransaction? tx, IProgramCache? cache,
        CancellationToken ct) =>
        (await ReadThroughAsync(connection, dialect, orgId, tx, cache, list => list.Any(p => p.ProgramId == programId), ct))
            .FirstOrDefault(p => p.ProgramId == programId);

    /// <summary>
    /// The program a posting goes to: the one named, else the organization's default program. A
    /// posting naming alternate currencies passes them in <paramref name="currencies"/>: a cached
    /// program without one of them is read again before the currency is refused.
    /// <paramref name="fresh"/> skips the cache altogether (returns, reversals, trigger settlements and
    /// the tier engine: rare postings on existing wallets of any currency; the lifecycle run's use
    /// <see cref="ResolveForWalletAsync"/>).
    /// </summary>
    public static async Task<LoyaltyProgram> ResolveAsync(Posting posting, long? programId, IEnumerable<string?>? currencies = null, bool fresh = false)
    {
        var named = currencies?.Where(name => !string.IsNullOrEmpty(name)).ToList() ?? [];
        var programs = await ReadThroughAsync(posting, fresh ? null : posting.CatalogForReads as IProgramCache,
            list => Pick(list, programId) is { } p && named.All(name => p.Currency(name!) is not null));
        return Pick(programs, programId) ?? throw Missing(programId);
    }

    /// <summary>
    /// The program of an existing wallet, for a lifecycle run's posting on it: through the posting's
    /// cache when the cached program has the wallet's currency, else read (a currency another process
    /// has just created is read, never taken for plain points). A run settles wallets by the thousand:
    /// reading the catalog afresh for each was three statements and the policies' JSON each time. The
    /// cache is as fresh as a bill's or a redemption's (a change is seen at once in the process that
    /// made it, within a second elsewhere).
    /// </summary>
    public static async Task<LoyaltyProgram> ResolveForWalletAsync(Posting posting, long programId, long currencyId)
    {
        var programs = await ReadThroughAsync(posting, posting.CatalogForReads as IProgramCache,
            list => Pick(list, programId) is { } p && (currencyId == WalletKey.PlainPoints || p.Currencies.Any(c => c.CurrencyId == currencyId)));
        return Pick(programs, programId) ?? throw Missing(programId);
    }

    /// <summary>
    /// <see cref="ReadThroughAsync(DbConnection, SqlDialect, long, DbTransaction?, IProgramCache?, Func{IReadOnlyList{LoyaltyProgram}, bool}, CancellationToken)"/>
    /// in a posting's transaction. A cached list that will do is taken without touching the
    /// connection, so what the posting holds for its first round trip (its key's claim) still goes
    /// with its first statements.
    /// </summary>
    private static async Task<IReadOnlyList<LoyaltyProgram>> ReadThroughAsync(Posting posting, IProgramCache? cache,
        Func<IReadOnlyList<LoyaltyProgram>, bool> satisfies) =>
        cache?.Programs(posting.OrgId) is { } cached && satisfies(cached)
            ? cached
            : await posting.WithConnectionAsync((conn, tx) => ReadThroughAsync(conn, posting.Dialect, posting.OrgId, tx, cache, satisfies, posting.Cancellation));

    /// <summary>The program a read is about: the one named, else the organization's default program (through the cache when one is given).</summary>
    public static async Task<LoyaltyProgram> ResolveAsync(DbConnection connection, SqlDialect dialect, long orgId, long? programId, DbTransaction? tx,
        IProgramCache? cache, CancellationToken ct) =>
        Pick(await ReadThroughAsync(connection, dialect, orgId, tx, cache, list => Pick(list, programId) is not null, ct), programId) ?? throw Missing(programId);

    private static LedgerException Missing(long? programId) => programId is { } id
        ? LedgerException.NotFound("program", id)
        : new LedgerException("program_not_found", "This organization has no program yet: create one first.", 404);

    private static LoyaltyProgram? Pick(IReadOnlyList<LoyaltyProgram> programs, long? programId) =>
        programId is { } id
            ? programs.FirstOrDefault(p => p.ProgramId == id)
            : programs.FirstOrDefault(p => p.IsDefault) ?? programs.FirstOrDefault();

    public static async Task<LoyaltyProgram> CreateAsync(Posting posting, NewProgram request)
    {
        posting.ChangeCatalog();
        if (string.IsNullOrWhiteSpace(request.Name)) throw LedgerException.Invalid("A program needs a name.");
        if (request.EarnRate is { IsNegative: true }) throw new LedgerException(ErrorCodes.InvalidPoints, "The earn rate cannot be negative.");
        var expiry = request.Expiry ?? ExpiryPolicy.NeverExpires;
        expiry.Validate();
        if (request.PromisedDays is < 1 or > 3650)
            throw LedgerException.Invalid("promisedDays is a number of days from 1 to 3650 (omit it to credit bills straight away).");
        if (request.ExpiryNoticeDays is < 0 or > 3650)
            throw LedgerException.Invalid($"expiryNoticeDays is a number of days from 0 (no notices) to 3650 (omit it for {LoyaltyProgram.DefaultExpiryNoticeDays}).");

        long programId;
        if (request.ProgramId is { } explicitId)
        {
            if (explicitId <= 0) throw LedgerException.Invalid("programId must be positive.");
            programId = explicitId;
            await posting.ClaimIdAsync("program", programId);
        }
        else
        {
            programId = await posting.NextIdAsync("program");
        }

        var exists = await posting.ScalarAsync<long>("SELECT COUNT(*) FROM programs WHERE org_id = @org AND program_id = @programId",
            new { org = posting.OrgId, programId });
        if (exists > 0) throw new LedgerException(ErrorCodes.AlreadyExists, $"Program {programId} already exists.", 409);

        if (request.IsDefault)
            await posting.ExecuteAsync("UPDATE programs SET is_default = 0 WHERE org_id = @org", new { org = posting.OrgId });
        var isFirst = await posting.ScalarAsync<long>("SELECT COUNT(*) FROM programs WHERE org_id = @org", new { org = posting.OrgId }) == 0;

        await posting.ExecuteAsync(
            """
            INSERT INTO programs (org_id, program_id, name, concept, earn_per_unit, allow_negative_balance, expiry_policy, is_default, created_at,
                promised_days, expiry_notice_days)
            VALUES (@org, @programId, @name, @concept, @earn, @allowNegative, @expiry, @isDefault, @now, @promisedDays, @expiryNoticeDays)
            """,
            new
            {
                org = posting.OrgId, programId, name = request.Name.Trim(), concept = request.Concept,
                earn = (request.EarnRate ?? Points.Zero).Thousandths, allowNegative = request.AllowNegativeBalance ? 1 : 0,
                expiry = expiry.ToJson(), isDefault = request.IsDefault || isFirst ? 1 : 0, now = posting.NowMs,
                promisedDays = request.PromisedDays, expiryNoticeDays = request.ExpiryNoticeDays,
            });

        foreach (var currency in request.Currencies ?? [])
            await AddCurrencyAsync(posting, programId, currency);

        return (await posting.WithConnectionAsync((conn, tx) => FindAsync(conn, posting.Dialect, posting.OrgId, programId, tx, null, posting.Cancellation)))!;
    }

    public static async Task<AlternateCurrency> AddCurrencyAsync(Posting posting, long programId, NewCurrency request)
    {
        posting.ChangeCatalog();
        if (string.IsNullOrWhiteSpace(request.Name)) throw LedgerException.Invalid("An alternate currency needs a name.");
        if (request.Name.Contains(',', StringComparison.Ordinal))
            throw LedgerException.Invalid("Currency names cannot contain commas (clients pass them as a comma list).");
        if (request.EarnRate is { IsNegative: true }) throw new LedgerException(ErrorCodes.InvalidPoints, "The earn rate cannot be negative.");
        var expiry = request.Expiry ?? ExpiryPolicy.NeverExpires;
        expiry.Validate();

        var programExists = await posting.ScalarAsync<long>("SELECT COUNT(*) FROM programs WHERE org_id = @org AND program_id = @programId",
            new { org = posting.OrgId, programId });
        if (programExists == 0) throw LedgerException.NotFound("program", programId);
        var taken = await posting.ScalarAsync<long>(
            "SELECT COUNT(*) FROM currencies WHERE org_id = @org AND program_id = @programId AND lower(name) = lower(@name)",
            new { org = posting.OrgId, programId, name = request.Name.Trim() });
        if (taken > 0) throw new LedgerException(ErrorCodes.AlreadyExists, $"Program {programId} already has a currency '{request.Name}'.", 409);

        var currencyId = await posting.NextIdAsync("currency");
        await posting.ExecuteAsync(
            """
            INSERT INTO currencies (org_id, currency_id, program_id, name, earn_per_unit, expiry_policy, created_at)
            VALUES (@org, @currencyId, @programId, @name, @earn, @expiry, @now)
            """,
            new
            {
                org = posting.OrgId, currencyId, programId, name = request.Name.Trim(),
                earn = (request.EarnRate ?? Points.Zero).Thousandths, expiry = expiry.ToJson(), now = posting.NowMs,
            });
        return new AlternateCurrency
        {
            CurrencyId = currencyId, ProgramId = programId, Name = request.Name.Trim(),
            EarnRate = request.EarnRate ?? Points.Zero, Expiry = expiry,
        };
    }
}

public sealed record NewProgram(
    string Name,
    long? ProgramId = null,
    string? Concept = null,
    Points? EarnRate = null,
    bool AllowNegativeBalance = false,
    ExpiryPolicy? Expiry = null,
    bool IsDefault = false,
    IReadOnlyList<NewCurrency>? Currencies = null,
    int? PromisedDays = null,
    int? ExpiryNoticeDays = null);

public sealed record NewCurrency(string Name, Points? EarnRate = null, ExpiryPolicy? Expiry = null);
