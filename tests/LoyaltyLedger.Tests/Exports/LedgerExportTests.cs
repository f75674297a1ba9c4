using System.Globalization;
using LoyaltyLedger.Exports;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Seeding;
using LoyaltyLedger.Server.Cli;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Exports;

/// <summary>
/// <c>GET /v1/exports/ledger.csv</c>, <c>GET /v1/exports/ledger.ndjson</c> and the <c>export</c>
/// command: every ledger line, as it is stored, in order; the filters; CSV that a spreadsheet cannot
/// be tricked into running and that reads back unchanged; refusals before anything is written.
/// </summary>
public abstract class LedgerExportTests(DatabaseFixture db)
{
    private static readonly DateTimeOffset Start = new(2025, 1, 1, 10, 0, 0, TimeSpan.Zero);

    private static string Id(long id) => id.ToString(CultureInfo.InvariantCulture);

    private static async Task<byte[]> ExportAsync(HttpClient http, string format, string query = "")
    {
        using var response = await http.GetAsync($"/v1/exports/ledger.{format}{(query.Length > 0 ? "?" + query : "")}");
        var body = await response.Content.ReadAsByteArrayAsync();
        ((int)response.StatusCode).ShouldBe(200, ExportFiles.Utf8(body));
        response.Content.Headers.ContentType!.MediaType.ShouldBe(format == "csv" ? "text/csv" : "application/x-ndjson");
        return body;
    }

    private static async Task<List<string[]>> CsvRowsAsync(HttpClient http, string query = "")
    {
        var (header, rows) = ExportFiles.ParseCsv(await ExportAsync(http, "csv", query));
        header.ShouldBe(LedgerExport.Columns);
        return rows;
    }

    private static int Column(string name) => LedgerExport.Columns.ToList().IndexOf(name);

    [Fact]
    public async Task an_export_of_a_seeded_history_equals_the_ledger_line_for_line_in_both_formats()
    {
        var seeded = await OrganizationSeeder.SeedAsync(db.Database, new SeedOptions
        {
            OrganizationName = "export " + Guid.NewGuid().ToString("N")[..8], Customers = 200, Events = 5_000, Stores = 5,
            Until = new DateTimeOffset(2025, 6, 1, 0, 0, 0, TimeSpan.Zero),
        }, null, CancellationToken.None);
        // A read key is enough.
        var key = await Tenants.IssueKeyAsync(db.Database, seeded.OrgId, KeyRole.Read, db.Host.Clock, CancellationToken.None);
        var http = db.Host.Client(key.KeyId, key.Secret);

        var csv = await CsvRowsAsync(http);
        var ndjson = ExportFiles.ParseNdjson(ExportFiles.Utf8(await ExportAsync(http, "ndjson")));

        csv.Count.ShouldBe((int)seeded.Entries);
        ExportFiles.Show(csv).ShouldBe(ExportFiles.Show(await ExportFiles.LedgerLinesAsync(db.Database, seeded.OrgId, asCsv: true)));
        ExportFiles.Show(ndjson).ShouldBe(ExportFiles.Show(await ExportFiles.LedgerLinesAsync(db.Database, seeded.OrgId, asCsv: false)));
        // The seed's history holds debits, bills at stores and tills, and alternate currencies.
        csv.ShouldContain(r => r[Column("entryType")] == "DEBIT" && r[Column("points")].StartsWith('-'));
        csv.ShouldContain(r => r[Column("billNumber")] != "" && r[Column("storeCode")] != "");
        csv.ShouldContain(r => r[Column("currency")] != "");
    }

    [Fact]
    public async Task the_filters_keep_the_lines_of_a_window_an_owner_a_program_and_an_event_name_and_combine()
    {
        var host = db.Host;
        host.Clock.Set(Start);
        var t = await host.NewTenantAsync();
        var shop = await t.NewShopAsync();
        var second = (await t.PostOkAsync("/v1/programs", new { name = "Second program", earnRate = "1" })).GetProperty("programId").GetInt64();
        var ada = await t.NewCustomerAsync();
        var bob = await t.NewCustomerAsync();
        var group = (await t.PostOkAsync("/v1/groups", new { name = "Family", primaryCustomerId = bob })).GetProperty("groupId").GetInt64();
        host.Clock.Set(Start.AddDays(1));
        await t.BillAsync(shop, ada, "B-1", 100);
        host.Clock.Set(Start.AddDays(2));
        await t.AwardAsync(bob, "50", programId: second);
        await t.PostOkAsync("/v1/transfers", new { from = new { customerId = ada }, to = new { groupId = group }, points = "4", programId = shop.ProgramId });
        host.Clock.Set(Start.AddDays(3));
        await t.PostOkAsync("/v1/redemptions", new { customerId = ada, points = "3", programId = shop.ProgramId });

        var all = await CsvRowsAsync(t.Http);
        all.Count.ShouldBe(ExportFiles.Show(await ExportFiles.LedgerLinesAsync(db.Database, t.OrgId, asCsv: true)).Count);
        async Task Expect(string query, Func<string[], bool> keep)
        {
            var expected = ExportFiles.Show(all.Where(keep));
            expected.Count.ShouldBeInRange(1, all.Count - 1, $"{query} should select some lines, not all");
            ExportFiles.Show(await CsvRowsAsync(t.Http, query)).ShouldBe(expected, query);
            ExportFiles.Show(ExportFiles.ParseNdjson(ExportFiles.Utf8(await ExportAsync(t.Http, "ndjson", query)))).ShouldBe(expected, query);
        }
        string Of(string[] row, string column) => row[Column(column)];
        var day1 = IsoTime.Format(Start.AddDays(1));
        var day2 = IsoTime.Format(Start.AddDays(2));
        var day3 = IsoTime.Format(Start.AddDays(3));

        await Expect($"from={day2}", r => string.CompareOrdinal(Of(r, "time"), day2) >= 0);
        await Expect($"to={day3}", r => string.CompareOrdinal(Of(r, "time"), day3) < 0);
        await Expect($"from={day2}&to={day3}", r => Of(r, "time") == day2);
        await Expect($"customerId={ada}", r => Of(r, "ownerType") == "CUSTOMER" && Of(r, "ownerId") == Id(ada));
        await Expect($"groupId={group}", r => Of(r, "ownerType") == "GROUP" && Of(r, "ownerId") == Id(group));
        await Expect($"programId={second}", r => Of(r, "programId") == Id(second));
        await Expect("eventName=PointsRedemption", r => Of(r, "eventName") == "PointsRedemption");
        await Expect($"customerId={ada}&programId={shop.ProgramId}&eventName=TransactionAdd&from={day1}",
            r => string.CompareOrdinal(Of(r, "time"), day1) >= 0 && Of(r, "ownerId") == Id(ada) && Of(r, "programId") == Id(shop.ProgramId) && Of(r, "eventName") == "TransactionAdd");

        // Nothing matches: a CSV export is its header alone, an NDJSON export empty.
        ExportFiles.Utf8(await ExportAsync(t.Http, "csv", "eventName=NoSuchEvent")).ShouldBe(string.Join(',', LedgerExport.Columns) + "\r\n");
        (await ExportAsync(t.Http, "ndjson", "eventName=NoSuchEvent")).ShouldBeEmpty();
    }

    [Fact]
    public async Task each_line_carries_the_tier_its_owner_held_when_it_was_posted_and_none_in_a_program_without_tiers()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync();
        var plain = (await t.PostOkAsync("/v1/programs", new { name = "No tiers", earnRate = "1" })).GetProperty("programId").GetInt64();
        await t.PutOkAsync($"/v1/programs/{shop.ProgramId}/tiers", new
        {
            metric = new { kind = "POINTS", window = "LIFETIME" },
            period = new { kind = "ROLLING", months = 12 },
            downgrade = "ONE_DOWN",
            tiers = new object[]
            {
                new { name = "Silver", threshold = "0" }, new { name = "Gold", threshold = "100", multiplier = "1.5", upgradeBonus = "10" },
            },
        });
        var customer = await t.NewCustomerAsync();
        // 100 points earned at Silver cross into Gold: the bill's line is Silver's, the bonus Gold's; the next bill earns 1.5x at Gold.
        await t.BillAsync(shop, customer, "T-1", 1000);
        await t.BillAsync(shop, customer, "T-2", 100);
        await t.AwardAsync(customer, "5", programId: plain);

        var csv = await CsvRowsAsync(t.Http, $"customerId={customer}");
        var points = csv.Where(r => r[Column("currency")] == "" && r[Column("entryType")] == "CREDIT")
            .Select(r => (r[Column("eventName")], r[Column("programId")], r[Column("points")], r[Column("tier")])).ToList();
        points.ShouldBe([
            ("TransactionAdd", Id(shop.ProgramId), "100.000", "Silver"), ("TierUpgradeBonus", Id(shop.ProgramId), "10.000", "Gold"),
            ("TransactionAdd", Id(shop.ProgramId), "15.000", "Gold"), ("GenericEvent", Id(plain), "5.000", ""),
        ]);
        ExportFiles.Show(await CsvRowsAsync(t.Http)).ShouldBe(ExportFiles.Show(await ExportFiles.LedgerLinesAsync(db.Database, t.OrgId, asCsv: true)));

        // NDJSON: the tier's name, or null in a program without tiers.
        var ndjson = ExportFiles.Utf8(await ExportAsync(t.Http, "ndjson", $"customerId={customer}")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        ndjson.ShouldContain(l => l.Contains("\"eventName\":\"TierUpgradeBonus\"") && l.EndsWith(",\"tier\":\"Gold\"}"));
        ndjson.Where(l => l.Contains($"\"programId\":{plain},")).ShouldAllBe(l => l.EndsWith(",\"tier\":null}"));
        ExportFiles.Show(ExportFiles.ParseNdjson(string.Join("", ndjson.Select(l => l + "\n"))))
            .ShouldBe(ExportFiles.Show(await CsvRowsAsync(t.Http, $"customerId={customer}")));
    }

    [Fact]
    public async Task text_a_spreadsheet_would_run_as_a_formula_is_neutralized_while_negative_numbers_stay_numbers()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(allowNegative: true, storeCode: "@store", tillCode: "+till");
        var customer = await t.NewCustomerAsync();
        const string formula = "=HYPERLINK(\"http://attacker.example\",\"click\")";
        await t.PostOkAsync("/v1/events", new
        {
            customerId = customer, eventName = formula, programId = shop.ProgramId, reason = "-2+3",
            storeCode = shop.StoreCode, tillCode = shop.TillCode, awards = new[] { new { points = "5" } },
        });
        // More than the balance: the program allows a negative balance, so the line's balance after is -20.
        await t.PostOkAsync("/v1/redemptions", new { customerId = customer, points = "25", programId = shop.ProgramId, notes = "\tcmd" });

        var text = ExportFiles.Utf8(await ExportAsync(t.Http, "csv", $"customerId={customer}"));
        text.ShouldContain("\"'=HYPERLINK(\"\"http://attacker.example\"\",\"\"click\"\")\"");
        text.ShouldContain(",\"'@store\",\"'+till\",");
        text.ShouldContain(",\"'-2+3\",");
        text.ShouldContain(",REGULAR,DEBIT,-25.000,-20.000,");
        text.ShouldNotContain("'-25");
        text.ShouldNotContain("'-20");

        var (_, rows) = ExportFiles.ParseCsv(System.Text.Encoding.UTF8.GetBytes(text));
        var award = rows.Single(r => r[Column("displayName")].Length > 0);
        award[Column("displayName")].ShouldBe("'" + formula);
        award[Column("storeCode")].ShouldBe("'@store");
        award[Column("tillCode")].ShouldBe("'+till");
        award[Column("reason")].ShouldBe("'-2+3");
        var redemption = rows.Single(r => r[Column("entryType")] == "DEBIT");
        redemption[Column("reason")].ShouldBe("'\tcmd");
        decimal.Parse(redemption[Column("points")], NumberStyles.Number, CultureInfo.InvariantCulture).ShouldBe(-25m);
        decimal.Parse(redemption[Column("balanceAfter")], NumberStyles.Number, CultureInfo.InvariantCulture).ShouldBe(-20m);

        // NDJSON is data, not a spreadsheet: the same cells exactly as they were sent.
        var ndjson = ExportFiles.ParseNdjson(ExportFiles.Utf8(await ExportAsync(t.Http, "ndjson", $"customerId={customer}")));
        ndjson.ShouldContain(r => r[Column("displayName")] == formula && r[Column("storeCode")] == "@store" && r[Column("reason")] == "-2+3");
        ndjson.ShouldContain(r => r[Column("points")] == "-25.000" && r[Column("balanceAfter")] == "-20.000" && r[Column("reason")] == "\tcmd");
    }

    [Fact]
    public async Task text_with_commas_quotes_line_breaks_and_other_scripts_reads_back_unchanged_with_the_csv_library()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(currencies: ["Étoiles \"gold\""]);
        var customer = await t.NewCustomerAsync();
        const string reason = "a, \"quoted\" reason\r\nover two lines; 日本語 ✓";
        await t.PostOkAsync("/v1/events", new
        {
            customerId = customer, eventName = "Birthday, \"big\" one", programId = shop.ProgramId, reason,
            awards = new[] { new { points = "1.5", currency = (string?)null }, new { points = "2", currency = (string?)"Étoiles \"gold\"" } },
        });

        var rows = await CsvRowsAsync(t.Http, $"customerId={customer}&eventName=GenericEvent");
        rows.Count.ShouldBe(2);
        rows.ShouldAllBe(r => r[Column("reason")] == reason && r[Column("displayName")] == "Birthday, \"big\" one");
        rows.Select(r => (r[Column("currency")], r[Column("points")])).ShouldBe([("", "1.500"), ("Étoiles \"gold\"", "2.000")]);
        ExportFiles.Show(rows).ShouldBe(ExportFiles.Show(
            ExportFiles.ParseNdjson(ExportFiles.Utf8(await ExportAsync(t.Http, "ndjson", $"customerId={customer}&eventName=GenericEvent")))));
    }

    [Fact]
    public async Task a_bad_window_a_malformed_or_unknown_id_is_refused_with_a_problem_and_no_export()
    {
        var t = await db.Host.NewTenantAsync(KeyRole.Read);
        (string Query, int Status, string Code)[] cases =
        [
            ("from=2025-02-01T00:00:00Z&to=2025-01-01T00:00:00Z", 400, "invalid_request"),
            ("from=2025-01-01T00:00:00Z&to=2025-01-01T00:00:00Z", 400, "invalid_request"),
            ("from=2025-01-01", 400, "invalid_request"),
            ("to=2025-01-01T00:00:00", 400, "invalid_request"),
            ("from=1.5", 400, "invalid_request"),
            ("customerId=abc", 400, "invalid_request"),
            ("groupId=1.5", 400, "invalid_request"),
            ("programId=" + new string('9', 40), 400, "invalid_request"),
            ("customerId=1&groupId=1", 400, "invalid_request"),
            ("customerId=987654321", 404, "customer_not_found"),
            ("groupId=987654321", 404, "group_not_found"),
            ("programId=987654321", 404, "program_not_found"),
        ];
        foreach (var format in new[] { "csv", "ndjson" })
        {
            foreach (var (query, status, code) in cases)
            {
                using var response = await t.Http.GetAsync($"/v1/exports/ledger.{format}?{query}");
                response.Content.Headers.ContentType!.MediaType.ShouldBe("application/problem+json", query);
                var body = await Tenant.ShouldFailAsync(response, status, code);
                ErrorResponsesNameNoDotNet(body.GetProperty("detail").GetString()!);
            }
        }
        using var anonymous = await db.Host.Client().GetAsync("/v1/exports/ledger.csv");
        await Tenant.ShouldFailAsync(anonymous, 401, "unauthorized");
    }

    private static void ErrorResponsesNameNoDotNet(string detail) =>
        LoyaltyLedger.Server.Api.ErrorResponses.NamesDotNet(detail).ShouldBeFalse(detail);

    [Fact]
    public async Task the_export_command_writes_the_file_the_endpoint_serves_and_writes_no_file_when_refused()
    {
        var host = db.Host;
        host.Clock.Set(Start);
        await host.NewTenantAsync();
        var t = await host.NewTenantAsync();
        var shop = await t.NewShopAsync();
        var customer = await t.NewCustomerAsync();
        await t.BillAsync(shop, customer, "C-1", 250);
        await t.PostOkAsync("/v1/redemptions", new { customerId = customer, points = "5", programId = shop.ProgramId });
        var other = await t.NewCustomerAsync();
        await t.AwardAsync(other, "7");
        var org = Id(t.OrgId);
        var dir = Directory.CreateTempSubdirectory("ledger-export-test").FullName;
        try
        {
            var csv = Path.Combine(dir, "ledger.csv");
            (await Commands.RunAsync(["export", "--format", "csv", "--org", org, "--out", csv, .. db.CommandLineArgs])).ShouldBe(0);
            (await File.ReadAllBytesAsync(csv)).ShouldBe(await ExportAsync(t.Http, "csv"));

            var ndjson = Path.Combine(dir, "ada.ndjson");
            (await Commands.RunAsync(["export", "--format", "ndjson", "--org", org, "--customer", Id(customer), "--from", "2025-01-01T00:00:00Z",
                "--out", ndjson, .. db.CommandLineArgs])).ShouldBe(0);
            var lines = await File.ReadAllBytesAsync(ndjson);
            lines.ShouldBe(await ExportAsync(t.Http, "ndjson", $"customerId={customer}&from=2025-01-01T00:00:00Z"));
            ExportFiles.ParseNdjson(ExportFiles.Utf8(lines)).ShouldAllBe(r => r[Column("ownerId")] == Id(customer));

            var refused = Path.Combine(dir, "refused.csv");
            (await Commands.RunAsync(["export", "--format", "csv", "--org", org, "--customer", "987654321", "--out", refused, .. db.CommandLineArgs])).ShouldBe(1);
            (await Commands.RunAsync(["export", "--format", "csv", "--org", org, "--from", "2025-02-01T00:00:00Z", "--to", "2025-01-01T00:00:00Z",
                "--out", refused, .. db.CommandLineArgs])).ShouldBe(1);
            (await Commands.RunAsync(["export", "--format", "xml", "--org", org, "--out", refused, .. db.CommandLineArgs])).ShouldBe(2);
            (await Commands.RunAsync(["export", "--format", "csv", "--org", org, "--from", "yesterday", "--out", refused, .. db.CommandLineArgs])).ShouldBe(2);
            (await Commands.RunAsync(["export", "--format", "csv", "--org", "987654321", "--out", refused, .. db.CommandLineArgs])).ShouldBe(1);
            (await Commands.RunAsync(["export", "--format", "csv", "--org", org, "--out", Path.Combine(dir, "no-such-dir", "x.csv"), .. db.CommandLineArgs])).ShouldBe(1);
            // This class's database holds the organizations of every test: the command will not guess which.
            (await Commands.RunAsync(["export", "--format", "csv", "--out", refused, .. db.CommandLineArgs])).ShouldBe(2);
            Directory.GetFiles(dir).Select(Path.GetFileName).ShouldBe(["ada.ndjson", "ledger.csv"], ignoreOrder: true);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

public sealed class LedgerExportTestsOnSqlite(SqliteDatabase db) : LedgerExportTests(db), IClassFixture<SqliteDatabase>;

public sealed class LedgerExportTestsOnPostgres(PostgresDatabase db) : LedgerExportTests(db), IClassFixture<PostgresDatabase>;
