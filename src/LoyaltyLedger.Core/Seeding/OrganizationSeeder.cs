using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Dapper;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Postings;
using LoyaltyLedger.Programs;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Stores;
using LoyaltyLedger.Tiers;

namespace LoyaltyLedger.Seeding;

/// <summary>What to generate.</summary>
public sealed record SeedOptions
{
    public string OrganizationName { get; init; } = "seeded organization";
    public long Customers { get; init; } = 1_000_000;
    /// <summary>Events in total, the customers' registrations included.</summary>
    public long Events { get; init; } = 20_000_000;
    /// <summary>The Zipf exponent of activity per customer: 0 spreads evenly, 1 makes a few customers very heavy.</summary>
    public double Skew { get; init; } = 1.0;
    public int RandomSeed { get; init; } = 7;
    public int Stores { get; init; } = 50;
    /// <summary>The generated history ends here (exclusive) and starts two years before.</summary>
    public DateTimeOffset Until { get; init; } = DateTimeOffset.UtcNow.AddDays(-1);
    /// <summary>An admin key to issue with a chosen id and secret (benchmarks); null issues a random one.</summary>
    public string? KeyId { get; init; }
    public string? KeySecret { get; init; }
    /// <summary>
    /// Writes on threads of their own while the generator goes on (see <see cref="PipelinedBulkLoad"/>);
    /// false writes from the generator's thread, which tests use to prove both paths load the same rows.
    /// </summary>
    public bool Pipelined { get; init; } = true;
    /// <summary>Tiers to configure on the seeded program, with every owner's tier counted from its history; null seeds no tiers.</summary>
    public SeedTiers? Tiers { get; init; }
}

public readonly record struct SeedProgress(long CustomersDone, long Customers, long Events, long Entries, long Rows, TimeSpan Elapsed)
{
    public double EntriesPerSecond => Elapsed.TotalSeconds > 0 ? Entries / Elapsed.TotalSeconds : 0;
}

/// <summary>What was generated, and the customers worth reading in a benchmark.</summary>
public sealed record SeedResult(
    long OrgId,
    IssuedKey Key,
    long Customers,
    long Events,
    long Entries,
    long Lots,
    long Rows,
    long HeaviestCustomerId,
    long HeaviestCustomerEvents,
    long LightCustomerId,
    string HeaviestAccountNumber,
    string LightAccountNumber,
    long ProgramId,
    TimeSpan Elapsed,
    SeededTierCounts? Tiers = null)
{
    public double EntriesPerSecond => Elapsed.TotalSeconds > 0 ? Entries / Elapsed.TotalSeconds : 0;
}

/// <summary>
/// The seeded owners' tiers: how many owners hold each tier, and how many have a period ended by
/// <paramref name="AsOf"/>, the end of the history (what an evaluation as of that instant decides).
/// </summary>
public sealed record SeededTierCounts(long Owners, long Due, DateTimeOffset AsOf, IReadOnlyList<(string Tier, long Owners)> ByTier);

/// <summary>
/// Generates a synthetic organization at scale and bulk-loads its raw rows: customers with a
/// Zipf-like spread of activity (a few heavy, many light), bills earning points and two alternate
/// currencies, redemptions, bulk allocations, generic events, and user groups.
/// </summary>
/// <remarks>
/// The rows bypass <see cref="Posting"/> for speed but imitate it column for column, and keep its
/// invariants by construction: each customer is generated on its own, its events in time order, with
/// its wallets' balances and open lots in memory. A credit appends a lot; a debit consumes the open
/// lots earliest expiry first, which here is first-in first-out, because each wallet's lots share one
/// expiry policy and that policy's dates grow with the date earned. A lot is written once it is
/// final: when a debit empties it, or at the customer's end with what it still holds. Ids are
/// assigned here, from the tables' current maxima, so no other writer may use the database while a
/// seed runs.
/// </remarks>
public static class OrganizationSeeder
{
    private static readonly string[] FirstNames = ["Ana", "Ben", "Chen", "Dana", "Emre", "Fatima", "Goran", "Hana", "Ivo", "Jun", "Kofi", "Lena", "Mehdi", "Nora", "Omar", "Pia"];
    private static readonly string[] LastNames = ["Silva", "Novak", "Wang", "Okafor", "Berg", "Haddad", "Kowalski", "Tanaka", "Moreau", "Rossi", "Schmidt", "Jensen"];
    private static readonly string[] GenericNames = ["ProfileCompleted", "AppCheckIn", "SurveyAnswered", "BirthdayBonus", "ReviewWritten"];
    /// <summary>A generic event's details per name, serialized once rather than once per event.</summary>
    private static readonly string[] GenericDetails = GenericNames
        .Select(name => JsonSerializer.Serialize(new Dictionary<string, string> { ["eventDisplayName"] = name, ["displayName"] = name })).ToArray();
    private static readonly TimeSpan History = TimeSpan.FromDays(730);
    /// <summary>The seeded program's alternate currencies.</summary>
    private static readonly NewCurrency[] SeedCurrencies = [new("Miles", new Points(500)), new("Stars", new Points(100))];

    internal static readonly BulkTable Customers = new("customers",
    [
        ("org_id", BulkType.Bigint), ("customer_id", BulkType.Bigint), ("first_name", BulkType.Text), ("last_name", BulkType.Text),
        ("external_id", BulkType.Text), ("email", BulkType.Text), ("mobile", BulkType.Text), ("entity_type", BulkType.Text), ("created_at", BulkType.Bigint),
    ]);

    internal static readonly BulkTable Identifiers = new("customer_identifiers",
    [
        ("org_id", BulkType.Bigint), ("source", BulkType.Text), ("account_id", BulkType.Text), ("kind", BulkType.Text),
        ("value", BulkType.Text), ("customer_id", BulkType.Bigint),
    ]);

    internal static readonly BulkTable Accounts = new("loyalty_accounts",
    [
        ("org_id", BulkType.Bigint), ("account_number", BulkType.Text), ("customer_id", BulkType.Bigint), ("status", BulkType.Text), ("created_at", BulkType.Bigint),
    ]);

    internal static readonly BulkTable Groups = new("user_groups",
    [
        ("org_id", BulkType.Bigint), ("group_id", BulkType.Bigint), ("external_id", BulkType.Text), ("name", BulkType.Text),
        ("primary_customer_id", BulkType.Bigint), ("max_members", BulkType.Integer), ("pools_points", BulkType.Smallint), ("created_at", BulkType.Bigint),
    ]);

    internal static readonly BulkTable Members = new("group_members",
    [
        ("org_id", BulkType.Bigint), ("group_id", BulkType.Bigint), ("customer_id", BulkType.Bigint), ("role", BulkType.Text),
        ("may_redeem", BulkType.Smallint), ("may_transfer", BulkType.Smallint), ("joined_at", BulkType.Bigint),
    ]);

    internal static readonly BulkTable Wallets = new("wallets",
    [
        ("wallet_id", BulkType.Bigint), ("org_id", BulkType.Bigint), ("owner_type", BulkType.Text), ("owner_id", BulkType.Bigint),
        ("program_id", BulkType.Bigint), ("currency_id", BulkType.Bigint), ("category", BulkType.Text), ("balance", BulkType.Bigint),
        ("updated_at", BulkType.Bigint), ("last_activity_at", BulkType.Bigint), ("history_count", BulkType.Bigint), ("history_last_at", BulkType.Bigint),
        ("lots_due_from", BulkType.Bigint),
    ]);

    internal static readonly BulkTable Events = new("events",
    [
        ("event_id", BulkType.Bigint), ("org_id", BulkType.Bigint), ("owner_type", BulkType.Text), ("owner_id", BulkType.Bigint),
        ("customer_id", BulkType.Bigint), ("event_name", BulkType.Text), ("display_name", BulkType.Text), ("created_at", BulkType.Bigint),
        ("source_program_id", BulkType.Bigint), ("store_id", BulkType.Bigint), ("till_id", BulkType.Bigint), ("bill_id", BulkType.Bigint),
        ("details", BulkType.Text), ("reason", BulkType.Text), ("posted_by", BulkType.Text), ("line_kinds", BulkType.Integer),
        ("points_seq", BulkType.Bigint), ("currency_seq", BulkType.Bigint),
    ]);

    internal static readonly BulkTable Entries = new("ledger_entries",
    [
        ("entry_id", BulkType.Bigint), ("org_id", BulkType.Bigint), ("event_id", BulkType.Bigint), ("wallet_id", BulkType.Bigint),
        ("owner_type", BulkType.Text), ("owner_id", BulkType.Bigint), ("program_id", BulkType.Bigint), ("currency_id", BulkType.Bigint),
        ("category", BulkType.Text), ("entry_type", BulkType.Text), ("points", BulkType.Bigint), ("balance_after", BulkType.Bigint), ("created_at", BulkType.Bigint),
        ("history_seq", BulkType.Bigint),
    ]);

    internal static readonly BulkTable Lots = new("lots",
    [
        ("lot_id", BulkType.Bigint), ("org_id", BulkType.Bigint), ("wallet_id", BulkType.Bigint), ("credit_entry_id", BulkType.Bigint),
        ("earned_at", BulkType.Bigint), ("expires_at", BulkType.Bigint), ("original", BulkType.Bigint), ("remaining", BulkType.Bigint), ("is_debt", BulkType.Smallint),
    ]);

    internal static readonly BulkTable Movements = new("lot_movements",
    [
        ("movement_id", BulkType.Bigint), ("org_id", BulkType.Bigint), ("entry_id", BulkType.Bigint), ("lot_id", BulkType.Bigint), ("points", BulkType.Bigint),
    ]);

    internal static readonly BulkTable Bills = new("bills",
    [
        ("bill_id", BulkType.Bigint), ("org_id", BulkType.Bigint), ("store_id", BulkType.Bigint), ("till_id", BulkType.Bigint),
        ("bill_number", BulkType.Text), ("customer_id", BulkType.Bigint), ("amount", BulkType.Bigint), ("gross_amount", BulkType.Bigint),
        ("bill_date", BulkType.Bigint), ("source", BulkType.Text), ("event_id", BulkType.Bigint), ("created_at", BulkType.Bigint),
        ("tier_metric", BulkType.Bigint), ("tier_period", BulkType.Bigint),
    ]);

    internal static readonly BulkTable OwnerEventCounts = new("owner_event_counts",
    [
        ("org_id", BulkType.Bigint), ("owner_type", BulkType.Text), ("owner_id", BulkType.Bigint), ("events", BulkType.Bigint),
        ("points_events", BulkType.Bigint), ("currency_events", BulkType.Bigint), ("last_event_at", BulkType.Bigint),
    ]);

    internal static readonly BulkTable OwnerTiers = new("owner_tiers",
    [
        ("org_id", BulkType.Bigint), ("owner_type", BulkType.Text), ("owner_id", BulkType.Bigint), ("program_id", BulkType.Bigint),
        ("tier_name", BulkType.Text), ("tier_since", BulkType.Bigint), ("period_no", BulkType.Bigint), ("period_start", BulkType.Bigint),
        ("period_end", BulkType.Bigint), ("metric_lifetime", BulkType.Bigint), ("metric_period", BulkType.Bigint), ("metric_next", BulkType.Bigint),
        ("pinned", BulkType.Smallint), ("override_reason", BulkType.Text), ("updated_at", BulkType.Bigint),
    ]);

    private static readonly BulkTable[] AllTables = [Customers, Identifiers, Accounts, Groups, Members, Wallets, Events, Entries, Lots, Movements, Bills, OwnerEventCounts, OwnerTiers];

    /// <summary>
    /// The loaded tables in two groups of about the same size on disk (ledger entries are the largest
    /// table); the second takes every table not in the first, so a table added to the load is not
    /// left without statistics. A table the seed fills by other means must be added by name.
    /// </summary>
    private static readonly string[][] VacuumHalves = VacuumSplit([Entries, Movements, Customers, Identifiers, Accounts, Groups, Members]);

    private static string[][] VacuumSplit(BulkTable[] first) =>
        [first.Select(t => t.Name).ToArray(), AllTables.Except(first).Select(t => t.Name).ToArray()];

    /// <summary>The tables whose ids the seeder assigns, with their id column.</summary>
    private static readonly (string Table, string Column)[] IdentityTables =
        [("wallets", "wallet_id"), ("events", "event_id"), ("ledger_entries", "entry_id"), ("lots", "lot_id"), ("lot_movements", "movement_id"), ("bills", "bill_id")];

    public static async Task<SeedResult> SeedAsync(LedgerDatabase db, SeedOptions options, Action<SeedProgress>? progress, CancellationToken ct)
    {
        if (options.Customers < 1) throw new ArgumentException("--customers must be at least 1");
        if (options.Events < options.Customers) throw new ArgumentException("--events counts every registration, so it is at least --customers");
        if (options.Skew is < 0 or > 3) throw new ArgumentException("--skew is between 0 and 3");
        if (options.Tiers is { DueShare: < 0 or > 1 }) throw new ArgumentException("the share of owners due is between 0 and 1");
        // A policy the configuration would refuse is refused before the organization is created.
        if (options.Tiers is { Policy: var policy })
        {
            policy.Validate();
            if (policy.Metric is { Kind: TierMetric.CurrencyUnits, Currency: { } counted }
                && !SeedCurrencies.Any(c => string.Equals(c.Name, counted.Trim(), StringComparison.OrdinalIgnoreCase)))
                throw new LedgerException("currency_not_found",
                    $"The seeded program has no alternate currency '{counted}' to count (it has {string.Join(" and ", SeedCurrencies.Select(c => c.Name))}).", 404);
        }
        var clock = Stopwatch.StartNew();
        var until = options.Until;
        var from = until - History;

        // The catalog (organization, key, program, stores) goes through the ordinary write path: it is
        // small, and its rules (default program, id counters, codes) then hold by definition.
        var org = await Tenants.CreateOrganizationAsync(db, options.OrganizationName, TimeProvider.System, ct);
        var key = await Tenants.IssueKeyAsync(db, org.OrgId, KeyRole.Admin, TimeProvider.System, ct, options.KeyId, options.KeySecret, "seed admin key");
        var (program, tills) = await db.WriteAsync(async (c, tx) =>
        {
            var posting = new Posting(c, tx, db.Dialect, org.OrgId, from, "seed", ct);
            var program = await ProgramCatalog.CreateAsync(posting, new NewProgram("Seed Rewards", Concept: "SEED", EarnRate: Points.FromWhole(1),
                Expiry: new ExpiryPolicy { Kind = ExpiryPolicy.DateEarned, Months = 36 }, IsDefault: true,
                Currencies: SeedCurrencies));
            var tills = new List<(long StoreId, long TillId)>();
            for (var s = 1; s <= options.Stores; s++)
            {
                var code = "S" + s.ToString("D3", CultureInfo.InvariantCulture);
                var store = await StoreDirectory.CreateStoreAsync(posting, new NewStore(code, $"Store {s}", "SEED"));
                for (var t = 1; t <= 2; t++)
                {
                    var till = await StoreDirectory.CreateTillAsync(posting, new NewTill($"{code}-T{t}", code));
                    tills.Add((store.StoreId, till.TillId));
                }
            }
            // Tiers are configured as PUT /v1/programs/{id}/tiers configures them, before any owner
            // exists, so the seed counts what the stored policy says.
            if (options.Tiers is { } seedTiers) program = await ConfigureTiersAsync(posting, program, seedTiers.Policy);
            return (program, tills);
        }, ct);

        var firstCustomer = await db.ReadAsync(c => c.ExecuteScalarAsync<long?>(
            new CommandDefinition("SELECT last_value FROM id_counters WHERE org_id = @org AND name = 'customer'", new { org = org.OrgId }, cancellationToken: ct)), ct) ?? 0;
        var next = new Dictionary<string, long>();
        await db.ReadAsync(async c =>
        {
            foreach (var (table, column) in IdentityTables)
                next[table] = await c.ExecuteScalarAsync<long>(new CommandDefinition($"SELECT COALESCE(MAX({column}), 0) FROM {table}", cancellationToken: ct)) + 1;
            return 0;
        }, ct);

        var tiers = options.Tiers is { } wanted ? new SeededTiers(program, org.OrgId, until, wanted.DueShare, options.RandomSeed) : null;
        var generator = new Generator(org.OrgId, program, tills, options, from, until, next, firstCustomer + 1, tiers);
        var direct = await db.Dialect.OpenBulkLoadAsync(db, AllTables, ct);
        await using (var load = options.Pipelined ? new PipelinedBulkLoad(direct, AllTables, lanePerTable: db.Dialect.LoadsTablesInParallel) : direct)
        {
            var lastReport = TimeSpan.Zero;
            generator.Run(load, done =>
            {
                if (progress is null || (clock.Elapsed - lastReport).TotalMilliseconds < 250) return;
                lastReport = clock.Elapsed;
                progress(new SeedProgress(done, options.Customers, load[Events.Name].Rows, load[Entries.Name].Rows, load.TotalRows, clock.Elapsed));
            }, ct);
            await load.CompleteAsync(ct);
            progress?.Invoke(new SeedProgress(options.Customers, options.Customers, load[Events.Name].Rows, load[Entries.Name].Rows, load.TotalRows, clock.Elapsed));
        }

        await db.WriteAsync(async (c, tx) =>
        {
            var posting = new Posting(c, tx, db.Dialect, org.OrgId, until, "seed", ct);
            await posting.ClaimIdAsync("customer", generator.LastCustomerId);
            if (generator.LastGroupId > 0) await posting.ClaimIdAsync("group", generator.LastGroupId);
            return 0;
        }, ct);
        // The identities moved past the loaded ids, and (PostgreSQL) fresh statistics and a visibility
        // map for the loaded tables. A VACUUM works on one table at a time on one core: two
        // connections, each with about half of the rows, use both.
        await db.Dialect.AfterBulkLoadAsync(db, IdentityTables, VacuumHalves, ct);

        clock.Stop();
        return new SeedResult(org.OrgId, key, options.Customers, generator.EventCount, generator.EntryCount, generator.LotCount, generator.RowCount,
            generator.HeaviestCustomerId, generator.HeaviestEvents, generator.LightCustomerId, AccountNumber(generator.HeaviestCustomerId),
            AccountNumber(generator.LightCustomerId), program.ProgramId, clock.Elapsed,
            tiers is null ? null : new SeededTierCounts(tiers.Owners, tiers.Due, until, tiers.ByTier()));
    }

    /// <summary>
    /// Stores the tier policy on the seeded program through the configuration's own path (its
    /// validation included) and answers the program as postings read it, with its tiers.
    /// </summary>
    private static async Task<LoyaltyProgram> ConfigureTiersAsync(Posting posting, LoyaltyProgram program, TierPolicy policy)
    {
        await TierCatalog.SetAsync(posting, program.ProgramId, policy);
        return await ProgramCatalog.ResolveAsync(posting, program.ProgramId, fresh: true);
    }

    /// <summary>The loyalty card number (vault account) of a seeded customer.</summary>
    public static string AccountNumber(long customerId) => "LL" + customerId.ToString("D10", CultureInfo.InvariantCulture);

    private sealed class Lot
    {
        public long LotId;
        public long EntryId;
        public long EarnedAt;
        public long? ExpiresAt;
        public long Original;
        public long Remaining;

        public OpenLot AsOpen => new(LotId, new Points(Remaining), ExpiresAt);
    }

    private sealed class SeedWallet
    {
        public long WalletId;
        public long CurrencyId;
        public long Balance;
        public long UpdatedAt;
        public long? FirstCreditAt;
        public long HistoryCount;
        public long HistoryLastAt;
        public ExpiryPolicy Expiry = ExpiryPolicy.NeverExpires;
        public long EarnPerUnit;

        /// <summary>
        /// The open lots in the order a debit takes them (<see cref="LotArithmetic.DebitOrder"/>). A
        /// queue is enough: a wallet is credited in time order under one expiry policy, so each new
        /// lot comes last in that order; <c>Generator.Credit</c> checks that it does.
        /// </summary>
        public readonly Queue<Lot> Open = new();
        public Lot? Newest;
    }

    private sealed class Generator(long orgId, LoyaltyProgram program, List<(long StoreId, long TillId)> tills, SeedOptions options,
        DateTimeOffset from, DateTimeOffset until, Dictionary<string, long> next, long firstCustomerId, SeededTiers? tiers)
    {
        private readonly Random _random = new(options.RandomSeed);
        private readonly long _fromMs = from.ToUnixTimeMilliseconds();
        private readonly long _untilMs = until.ToUnixTimeMilliseconds();
        private long _walletId = next["wallets"];
        private long _eventId = next["events"];
        private long _entryId = next["ledger_entries"];
        private long _lotId = next["lots"];
        private long _movementId = next["lot_movements"];
        private long _billId = next["bills"];
        private BulkLoad _load = null!;
        private BulkRowWriter _events = null!, _entries = null!, _lots = null!, _movements = null!, _bills = null!;
        // The current customer's events, as Posting counts them in owner_event_counts.
        private (long Events, long PointsEvents, long CurrencyEvents, long LastAt) _counts;

        public long LastCustomerId { get; private set; }
        public long LastGroupId { get; private set; }
        public long EventCount { get; private set; }
        public long EntryCount { get; private set; }
        public long LotCount { get; private set; }
        public long RowCount => _load.TotalRows;
        public long HeaviestCustomerId { get; private set; }
        public long HeaviestEvents { get; private set; } = -1;
        public long LightCustomerId { get; private set; }

        public void Run(BulkLoad load, Action<long> progress, CancellationToken ct)
        {
            _load = load;
            (_events, _entries, _lots, _movements, _bills) = (load[Events.Name], load[Entries.Name], load[Lots.Name], load[Movements.Name], load[Bills.Name]);
            var activity = options.Events - options.Customers;
            // Zipf weights 1/rank^s, rank = position in id order: the first customers are the heaviest.
            var totalWeight = 0.0;
            for (var r = 1L; r <= options.Customers; r++) totalWeight += Math.Pow(r, -options.Skew);

            var wallets = new SeedWallet[1 + program.Currencies.Count];
            for (var i = 0; i < options.Customers; i++)
            {
                ct.ThrowIfCancellationRequested();
                var share = activity * Math.Pow(i + 1, -options.Skew) / totalWeight;
                // Stochastic rounding keeps the expected total equal to the events asked for.
                var count = (long)share + (_random.NextDouble() < share - Math.Floor(share) ? 1 : 0);
                var customerId = firstCustomerId + i;
                Customer(customerId, count, wallets);
                if (count > HeaviestEvents) (HeaviestCustomerId, HeaviestEvents) = (customerId, count);
                if (count >= 1 && count <= 5) LightCustomerId = customerId;
                LastCustomerId = customerId;
                progress(i + 1);
            }
            if (LightCustomerId == 0) LightCustomerId = LastCustomerId;
            WriteGroups();
        }

        private void Customer(long customerId, long activityCount, SeedWallet[] wallets)
        {
            var span = _untilMs - _fromMs;
            // Heavy customers joined early; everyone joins in the first half of the history at the latest.
            var joinedAt = _fromMs + (long)(_random.NextDouble() * span * (activityCount > 1000 ? 0.05 : 0.5));
            wallets[0] = new SeedWallet { WalletId = _walletId++, CurrencyId = WalletKey.PlainPoints, Expiry = program.Expiry, EarnPerUnit = program.EarnRate.Thousandths, UpdatedAt = joinedAt };
            for (var c = 0; c < program.Currencies.Count; c++)
            {
                var currency = program.Currencies[c];
                wallets[c + 1] = new SeedWallet { WalletId = _walletId++, CurrencyId = currency.CurrencyId, Expiry = currency.Expiry, EarnPerUnit = currency.EarnRate.Thousandths, UpdatedAt = joinedAt };
            }

            WriteCustomer(customerId, joinedAt);
            _counts = default;
            tiers?.Begin(joinedAt);
            // Registration: an OPENING_BALANCE line of zero per wallet, as CustomerDirectory.RegisterAsync posts.
            var registration = Event(customerId, EventNames.CustomerRegistration, joinedAt, null, null, null, null, null, null,
                EventLineKinds.Points | (wallets.Length > 1 ? EventLineKinds.Currency : 0));
            foreach (var w in wallets) Entry(registration, customerId, w, EntryType.OpeningBalance, 0, joinedAt);

            var at = joinedAt;
            var gap = Math.Max(2.0, (_untilMs - joinedAt) / (double)(activityCount + 1));
            for (var n = 0; n < activityCount; n++)
            {
                at = Math.Min(_untilMs - 1, at + 1 + (long)(_random.NextDouble() * 2 * gap));
                var roll = _random.NextDouble();
                if (roll < 0.20 && wallets[0].Balance >= 10_000) Redeem(customerId, wallets[0], at);
                else if (roll < 0.25 && wallets.Length > 1 && wallets[1].Balance >= 10_000) Redeem(customerId, wallets[1], at);
                else if (roll < 0.35) Generic(customerId, wallets[0], at);
                else if (roll < 0.42) Allocate(customerId, wallets[0], at);
                else Bill(customerId, wallets, at);
            }

            foreach (var w in wallets)
            {
                // When the wallet's first open lot is due, as a posting that looked for due lots
                // leaves it (Wallet.LotsDueFrom): a seeded ledger is one whose wallets have been
                // posted to, so the next posting need not look again before then.
                var dueFrom = w.Open.Min(lot => lot.ExpiresAt) ?? Wallet.NoLotDue;
                while (w.Open.TryDequeue(out var lot)) WriteLot(w, lot);
                var row = _load[Wallets.Name];
                row.Start();
                row.Long(w.WalletId); row.Long(orgId); row.Text("CUSTOMER"); row.Long(customerId); row.Long(program.ProgramId);
                row.Long(w.CurrencyId); row.Text("REGULAR"); row.Long(w.Balance); row.Long(w.UpdatedAt); row.Long(w.FirstCreditAt);
                row.Long(w.HistoryCount); row.Long(w.HistoryLastAt); row.Long(dueFrom);
                row.End();
            }

            var counts = _load[OwnerEventCounts.Name];
            counts.Start();
            counts.Long(orgId); counts.Text("CUSTOMER"); counts.Long(customerId);
            counts.Long(_counts.Events); counts.Long(_counts.PointsEvents); counts.Long(_counts.CurrencyEvents); counts.Long(_counts.LastAt);
            counts.End();
            tiers?.Finish(_load[OwnerTiers.Name], "CUSTOMER", customerId, at);
        }

        private void WriteCustomer(long customerId, long joinedAt)
        {
            var id = customerId.ToString(CultureInfo.InvariantCulture);
            var first = FirstNames[_random.Next(FirstNames.Length)];
            var last = LastNames[_random.Next(LastNames.Length)];
            var email = $"c{id}@seed.example";
            var mobile = "+1555" + customerId.ToString("D9", CultureInfo.InvariantCulture);
            var externalId = "EXT" + id;
            var row = _load[Customers.Name];
            row.Start();
            row.Long(orgId); row.Long(customerId); row.Text(first); row.Text(last); row.Text(externalId); row.Text(email); row.Text(mobile);
            row.Text("CUSTOMER"); row.Long(joinedAt);
            row.End();
            var identifiers = _load[Identifiers.Name];
            foreach (var (kind, value) in new[] { ("id", id), ("email", email), ("mobile", mobile), ("externalId", externalId) })
            {
                identifiers.Start();
                identifiers.Long(orgId); identifiers.Text("INSTORE"); identifiers.Text(""); identifiers.Text(kind); identifiers.Text(value); identifiers.Long(customerId);
                identifiers.End();
            }
            var account = _load[Accounts.Name];
            account.Start();
            account.Long(orgId); account.Text(AccountNumber(customerId)); account.Long(customerId); account.Text("ACTIVE"); account.Long(joinedAt);
            account.End();
        }

        private void Bill(long customerId, SeedWallet[] wallets, long at)
        {
            // 5.00 to 400.00, in thousandths: a few big baskets among many small ones.
            var amount = (500 + (long)(Math.Pow(_random.NextDouble(), 2) * 39_500)) * 10;
            var (storeId, tillId) = tills[_random.Next(tills.Count)];
            var billId = _billId++;
            var earnings = wallets.Select(w => PointsPostings.Earn(amount, new Points(w.EarnPerUnit)).Thousandths).ToArray();
            long tierMetric = 0;
            long? tierPeriod = null;
            if (tiers is not null)
            {
                tierMetric = tiers.BillMetric(amount, earnings);
                tierPeriod = tiers.Count(at, tierMetric);
            }
            var kinds = wallets.Select((w, i) => earnings[i] <= 0 ? 0 : w.CurrencyId == 0 ? EventLineKinds.Points : EventLineKinds.Currency).Aggregate(0, (a, b) => a | b);
            var eventId = Event(customerId, EventNames.TransactionAdd, at, null, storeId, tillId, billId, null, null, kinds);
            var bill = _bills;
            bill.Start();
            bill.Long(billId); bill.Long(orgId); bill.Long(storeId); bill.Long(tillId); bill.Text("B" + billId.ToString(CultureInfo.InvariantCulture));
            bill.Long(customerId); bill.Long(amount); bill.Long(amount); bill.Long(at); bill.Text("INSTORE"); bill.Long(eventId); bill.Long(at);
            bill.Long(tierMetric); bill.Long(tierPeriod);
            bill.End();
            for (var i = 0; i < wallets.Length; i++)
            {
                if (earnings[i] > 0) Credit(eventId, customerId, wallets[i], earnings[i], at);
            }
        }

        private void Generic(long customerId, SeedWallet points, long at)
        {
            var pick = _random.Next(GenericNames.Length);
            var (name, details) = (GenericNames[pick], GenericDetails[pick]);
            var eventId = Event(customerId, EventNames.GenericEvent, at, name, null, null, null, details, null, EventLineKinds.Points);
            var awarded = (_random.Next(2) + 1) * 50_000L;
            Credit(eventId, customerId, points, awarded, at);
            tiers?.Count(at, tiers.AwardMetric(awarded));
        }

        private void Allocate(long customerId, SeedWallet points, long at)
        {
            var eventId = Event(customerId, EventNames.BulkAllocatePoints, at, null, null, null, null, null, "seeded campaign", EventLineKinds.Points);
            var awarded = (25 + _random.Next(476)) * 1000L;
            Credit(eventId, customerId, points, awarded, at);
            tiers?.Count(at, tiers.AwardMetric(awarded));
        }

        private void Redeem(long customerId, SeedWallet wallet, long at)
        {
            // Whole points, between a tenth and a half of the balance.
            var whole = wallet.Balance / 1000;
            var points = Math.Max(1, (long)(whole * (0.1 + _random.NextDouble() * 0.4))) * 1000;
            var (storeId, tillId) = _random.Next(3) == 0 ? tills[_random.Next(tills.Count)] : (0L, 0L);
            var details = "{\"transactionNumber\":\"RDM-" + _eventId.ToString(CultureInfo.InvariantCulture) + "\"}";
            var eventId = Event(customerId, EventNames.PointsRedemption, at, null, storeId == 0 ? null : storeId, tillId == 0 ? null : tillId, null, details, null,
                wallet.CurrencyId == 0 ? EventLineKinds.Points : EventLineKinds.Currency);
            wallet.Balance -= points;
            wallet.UpdatedAt = at;
            var entryId = Entry(eventId, customerId, wallet, EntryType.Debit, points, at);
            // The lots a redemption posting would take, by the posting's own rule.
            var (taken, shortfall) = LotArithmetic.Take(wallet.Open.Select(l => l.AsOpen), new Points(points));
            if (shortfall.IsPositive) throw new InvalidOperationException($"Seeded redemption of {points} beyond wallet {wallet.WalletId}'s lots.");
            foreach (var take in taken)
            {
                var lot = wallet.Open.Peek();
                if (lot.LotId != take.LotId) throw new InvalidOperationException($"Lot {take.LotId} taken out of order in wallet {wallet.WalletId}.");
                lot.Remaining -= take.Points.Thousandths;
                var m = _movements;
                m.Start();
                m.Long(_movementId++); m.Long(orgId); m.Long(entryId); m.Long(lot.LotId); m.Long(take.Points.Thousandths);
                m.End();
                if (lot.Remaining == 0) WriteLot(wallet, wallet.Open.Dequeue());
            }
        }

        private void Credit(long eventId, long customerId, SeedWallet wallet, long points, long at)
        {
            wallet.Balance += points;
            wallet.UpdatedAt = at;
            wallet.FirstCreditAt ??= at;
            var entryId = Entry(eventId, customerId, wallet, EntryType.Credit, points, at);
            var lot = new Lot
            {
                LotId = _lotId++, EntryId = entryId, EarnedAt = at, Original = points, Remaining = points,
                ExpiresAt = wallet.Expiry.ExpiryFor(DateTimeOffset.FromUnixTimeMilliseconds(at))?.ToUnixTimeMilliseconds(),
            };
            if (wallet.Newest is { } newest && LotArithmetic.DebitOrder.Compare(newest.AsOpen, lot.AsOpen) > 0)
                throw new InvalidOperationException($"Lot {lot.LotId} of wallet {wallet.WalletId} would be taken before an older one: the seeded open lots are not in debit order.");
            wallet.Open.Enqueue(lot);
            wallet.Newest = lot;
        }

        private long Event(long customerId, string name, long at, string? displayName, long? storeId, long? tillId, long? billId, string? details, string? reason,
            int lineKinds)
        {
            var id = _eventId++;
            var e = _events;
            e.Start();
            e.Long(id); e.Long(orgId); e.Text("CUSTOMER"); e.Long(customerId); e.Long(customerId); e.Text(name); e.Text(displayName); e.Long(at);
            e.Long(program.ProgramId); e.Long(storeId); e.Long(tillId); e.Long(billId); e.Text(details); e.Text(reason); e.Text("seed");
            // Numbered as Posting numbers them: the customer's events are generated in time order.
            if (at < _counts.LastAt) throw new InvalidOperationException($"Seeded event at {at} before its owner's last at {_counts.LastAt}.");
            _counts.Events++;
            _counts.LastAt = at;
            if ((lineKinds & EventLineKinds.Points) != 0) _counts.PointsEvents++;
            if ((lineKinds & EventLineKinds.Currency) != 0) _counts.CurrencyEvents++;
            e.Long(lineKinds);
            e.Long((lineKinds & EventLineKinds.Points) != 0 ? (long?)_counts.PointsEvents : null);
            e.Long((lineKinds & EventLineKinds.Currency) != 0 ? (long?)_counts.CurrencyEvents : null);
            e.End();
            EventCount++;
            return id;
        }

        private long Entry(long eventId, long customerId, SeedWallet wallet, EntryType type, long points, long at)
        {
            var id = _entryId++;
            var e = _entries;
            e.Start();
            e.Long(id); e.Long(orgId); e.Long(eventId); e.Long(wallet.WalletId); e.Text("CUSTOMER"); e.Long(customerId); e.Long(program.ProgramId);
            e.Long(wallet.CurrencyId); e.Text("REGULAR"); e.Text(type.ToWire()); e.Long(points); e.Long(wallet.Balance); e.Long(at);
            // Numbered in the wallet's history as Posting numbers it (the vault's: plain points, no
            // opening balance), in time order, as the customer's activity is generated.
            if (wallet.CurrencyId == WalletKey.PlainPoints && type != EntryType.OpeningBalance)
            {
                wallet.HistoryCount++;
                wallet.HistoryLastAt = at;
                e.Long(wallet.HistoryCount);
            }
            else
            {
                e.Long(null);
            }
            e.End();
            EntryCount++;
            return id;
        }

        private void WriteLot(SeedWallet wallet, Lot lot)
        {
            var l = _lots;
            l.Start();
            l.Long(lot.LotId); l.Long(orgId); l.Long(wallet.WalletId); l.Long(lot.EntryId); l.Long(lot.EarnedAt); l.Long(lot.ExpiresAt);
            l.Long(lot.Original); l.Long(lot.Remaining); l.Long(0);
            l.End();
            LotCount++;
        }

        /// <summary>Households of three among the lightest customers: one primary, two secondaries; their points stay personal.</summary>
        private void WriteGroups()
        {
            var groups = Math.Min(Math.Max(1, options.Customers / 1000), options.Customers / 3);
            var groupRow = _load[Groups.Name];
            var memberRow = _load[Members.Name];
            for (var g = 1L; g <= groups; g++)
            {
                var members = Enumerable.Range(0, 3).Select(k => LastCustomerId - (g - 1) * 3 - k).ToArray();
                var createdAt = _untilMs - 1;
                groupRow.Start();
                groupRow.Long(orgId); groupRow.Long(g); groupRow.Text("G" + g.ToString(CultureInfo.InvariantCulture)); groupRow.Text($"Household {g}");
                groupRow.Long(members[0]); groupRow.Long(10); groupRow.Long(0); groupRow.Long(createdAt);
                groupRow.End();
                for (var k = 0; k < members.Length; k++)
                {
                    memberRow.Start();
                    memberRow.Long(orgId); memberRow.Long(g); memberRow.Long(members[k]); memberRow.Text(k == 0 ? "PRIMARY" : "SECONDARY");
                    memberRow.Long(1); memberRow.Long(k == 0 ? 1 : 0); memberRow.Long(createdAt);
                    memberRow.End();
                }
                LastGroupId = g;
            }
        }
    }
}
