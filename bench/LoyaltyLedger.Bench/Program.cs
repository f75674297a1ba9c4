using System.Diagnostics;
using System.Globalization;
using LoyaltyLedger;
using LoyaltyLedger.Customers;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.PointsLedger;
using LoyaltyLedger.Programs;
using LoyaltyLedger.Storage;

// Points-ledger read at depth: is any page of a 10,000-event history as fast as the first?
// Usage: dotnet run -c Release --project bench/LoyaltyLedger.Bench -- [--postgres CONNSTRING] [--events N] [--others N] [--runs N]
var options = Args.Parse(args);
var events = options.Int("events", 10_000);
var others = options.Int("others", 5);
var runs = options.Int("runs", 30);

LedgerDatabase db;
string? sqliteDir = null;
if (options.Text("postgres") is { } postgres)
{
    db = LedgerDatabase.ForPostgres(postgres);
}
else
{
    sqliteDir = Path.Combine(Path.GetTempPath(), "loyaltyledger-bench", Guid.NewGuid().ToString("N"));
    db = LedgerDatabase.ForSqliteFile(Path.Combine(sqliteDir, "ledger.db"));
}

try
{
    await Migrations.ApplyAsync(db, CancellationToken.None);
    var org = await Tenants.CreateOrganizationAsync(db, "bench " + Guid.NewGuid().ToString("N")[..8], TimeProvider.System, CancellationToken.None);
    var start = new DateTimeOffset(2023, 1, 1, 0, 0, 0, TimeSpan.Zero);

    var seeding = Stopwatch.StartNew();
    var (programId, customerIds) = await db.WriteAsync(async (c, tx) =>
    {
        var setup = new Posting(c, tx, db.Dialect, org.OrgId, start, "bench");
        var program = await ProgramCatalog.CreateAsync(setup, new NewProgram("Bench program", Currencies: [new NewCurrency("Stars")]));
        var ids = new List<long>();
        for (var i = 0; i <= others; i++)
            ids.Add((await CustomerDirectory.RegisterAsync(setup, new NewCustomer(FirstName: "Bench" + i))).Customer.CustomerId);
        return (program.ProgramId, ids);
    }, CancellationToken.None);
    var stars = (await db.ReadAsync(c => ProgramCatalog.FindAsync(c, db.Dialect, org.OrgId, programId, null, null, CancellationToken.None), CancellationToken.None))!.Currencies[0].CurrencyId;

    // The measured customer and, interleaved in time, other customers with as many events each, so
    // that a read which scanned beyond its owner's rows would show.
    foreach (var customerId in customerIds)
    {
        for (var batch = 0; batch < events; batch += 1000)
        {
            await db.WriteAsync(async (c, tx) =>
            {
                for (var i = batch; i < Math.Min(events, batch + 1000); i++)
                {
                    var posting = new Posting(c, tx, db.Dialect, org.OrgId, start.AddMinutes(i * 7).AddSeconds(customerId % 60), "bench");
                    var eventId = await posting.InsertEventAsync(new NewEvent(OwnerType.Customer, customerId, customerId, EventNames.GenericEvent,
                        DetailsJson: "{\"eventDisplayName\":\"Bench\",\"displayName\":\"Bench\"}"));
                    // Every event credits points; every third also Stars, so currency filters have lines to drop.
                    var key = new WalletKey(OwnerType.Customer, customerId, programId, WalletKey.PlainPoints, PointCategory.Regular);
                    var starsKey = key with { CurrencyId = stars };
                    await posting.LockWalletsAsync([key, starsKey]);
                    await posting.CreditAsync(eventId, key, Points.FromWhole(1 + (i % 50)), null);
                    if (i % 3 == 0) await posting.CreditAsync(eventId, starsKey, Points.FromWhole(5), null);
                }
                return 0;
            }, CancellationToken.None);
        }
    }
    if (db.Provider == DatabaseProvider.Postgres)
    {
        // What autovacuum would have done by now: statistics and the visibility map for index-only scans.
        await db.ReadAsync(async c => { await using var cmd = c.CreateCommand(); cmd.CommandText = "VACUUM ANALYZE"; return await cmd.ExecuteNonQueryAsync(); },
            CancellationToken.None);
    }
    Console.WriteLine($"database: {db.Description}, organization {org.OrgId}");
    Console.WriteLine($"seeded {customerIds.Count} customers x {events} events in {seeding.Elapsed.TotalSeconds:F1} s; measured customer {customerIds[0]}");

    var measured = customerIds[0];
    var cases = new List<(string Name, Func<int, LedgerQuery> Query)>
    {
        ("points only (default), DESC", page => Query(measured, page, "", descending: true)),
        ("points only (default), ASC", page => Query(measured, page, "", descending: false)),
        ("points + currencies, DESC", page => Query(measured, page, "includeAlternateCurrencies=true", descending: true)),
    };
    foreach (var (name, query) in cases)
    {
        var total = (await LedgerReader.ReadAsync(db, org.OrgId, query(0), ReadConsistency.Primary, CancellationToken.None)).LedgerDetails;
        var pages = new[] { 0, 1, 10, 25, 50, 75, (int)total.PageCount - 2, (int)total.PageCount - 1 }.Where(p => p >= 0).Distinct().ToList();
        var times = pages.ToDictionary(p => p, _ => new List<double>());
        for (var w = 0; w < 3; w++)
            foreach (var page in pages) await LedgerReader.ReadAsync(db, org.OrgId, query(page), ReadConsistency.Primary, CancellationToken.None);
        // Rounds over every page, so that load from elsewhere on the machine falls on all pages alike.
        for (var r = 0; r < runs; r++)
        {
            foreach (var page in pages)
            {
                var sw = Stopwatch.StartNew();
                var response = await LedgerReader.ReadAsync(db, org.OrgId, query(page), ReadConsistency.Primary, CancellationToken.None);
                times[page].Add(sw.Elapsed.TotalMilliseconds);
                if (response.LedgerEntries.Count == 0) throw new InvalidOperationException("empty page");
            }
        }
        Console.WriteLine();
        Console.WriteLine($"{name}: totalEntries {total.TotalEntries}, pageCount {total.PageCount} (limit 100), {runs} rounds");
        Console.WriteLine("  page | min ms | median ms | median / page 0");
        var first = Median(times[0]);
        foreach (var page in pages)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {page,4} | {times[page].Min(),6:F2} | {Median(times[page]),9:F2} | {Median(times[page]) / first,6:F2}"));
        }
    }
}
finally
{
    await db.DisposeAsync();
    if (sqliteDir is not null && options.Text("keep") is null) Directory.Delete(sqliteDir, recursive: true);
}

static double Median(List<double> values)
{
    var sorted = values.Order().ToList();
    return sorted[sorted.Count / 2];
}

static LedgerQuery Query(long customerId, int page, string extra, bool descending) => LedgerQueryParser.Parse(name =>
{
    var pairs = $"identifierName=id&identifierValue={customerId}&source=INSTORE&limit=100&offset={page}&sortOrder={(descending ? "DESC" : "ASC")}&{extra}"
        .Split('&', StringSplitOptions.RemoveEmptyEntries).Select(p => p.Split('=')).ToDictionary(p => p[0], p => p[1]);
    return pairs.GetValueOrDefault(name);
});

internal sealed class Args(Dictionary<string, string> values)
{
    public static Args Parse(string[] args)
    {
        var values = new Dictionary<string, string>();
        for (var i = 0; i + 1 < args.Length; i += 2) values[args[i].TrimStart('-')] = args[i + 1];
        return new Args(values);
    }

    public string? Text(string name) => values.GetValueOrDefault(name);

    public int Int(string name, int fallback) =>
        values.TryGetValue(name, out var text) ? int.Parse(text, CultureInfo.InvariantCulture) : fallback;
}
