using System.Globalization;
using Dapper;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.PointsLedger;

/// <summary>
/// owner_event_counts, the running counts the points-ledger read takes totalEntries from: kept by
/// every kind of posting, backfilled by the migration, and equal to a count of the events and their
/// lines (not of line_kinds, which the counts are derived from) in each scope the read answers from them.
/// </summary>
public abstract class OwnerEventCountTests(DatabaseFixture db)
{
    private sealed record Busy(Tenant T, long Early, long A, long B, long Primary, long Child, long GroupId);

    /// <summary>One owner's counts as "TYPE id: events/with points/with currencies".</summary>
    private static string Line(string ownerType, long ownerId, long events, long points, long currency) =>
        string.Create(CultureInfo.InvariantCulture, $"{ownerType} {ownerId}: {events}/{points}/{currency}");

    /// <summary>Postings of every kind, on customers and a pooling group, in points and a currency.</summary>
    private async Task<Busy> BusyTenantAsync()
    {
        db.Host.Clock.Set(new DateTimeOffset(2025, 1, 1, 10, 0, 0, TimeSpan.Zero));
        var t = await db.Host.NewTenantAsync();
        // Registered before any program exists: a registration with no lines at all.
        var early = await t.NewCustomerAsync();
        var shop = await t.NewShopAsync(earnRate: "1", currencies: ["Stars"], expiry: new { kind = "DATE_EARNED", days = 30 });
        var a = await t.NewCustomerAsync();
        var b = await t.NewCustomerAsync();
        var primary = await t.NewCustomerAsync();
        var child = await t.NewCustomerAsync();
        var group = await t.PostOkAsync("/v1/groups", new
        {
            name = "Family", primaryCustomerId = primary,
            members = new[] { new { customerId = child, role = "SECONDARY", mayRedeem = false } },
        });
        var groupId = group.GetProperty("groupId").GetInt64();

        await t.BillAsync(shop, a, "C-1", 200);
        await t.AwardAsync(a, "40", "Stars");
        await t.PostOkAsync("/v1/events", new { customerId = a, eventName = "Both", awards = new object[] { new { points = "5" }, new { points = "6", currency = "Stars" } } });
        var redemption = await t.PostOkAsync("/v1/redemptions", new { customerId = a, points = "30" });
        await t.PostOkAsync("/v1/redemptions", new { customerId = a, points = "10", currency = "Stars" });
        await t.PostOkAsync("/v1/redemptions/reversals", new { redemptionEventId = redemption.GetProperty("eventId").GetInt64(), points = "10" });
        await t.PostOkAsync("/v1/transfers", new { from = new { customerId = a }, to = new { customerId = b }, points = "20" });
        await t.PostOkAsync("/v1/transfers", new { from = new { customerId = a }, to = new { customerId = b }, points = "3", currency = "Stars" });
        await t.PostOkAsync("/v1/transfers", new { from = new { customerId = a }, to = new { groupId }, points = "7" });
        await t.PostOkAsync("/v1/allocations", new { allocations = new object[] { new { customerId = a, points = "2" }, new { customerId = b, points = "1", currency = "Stars" } } });
        await t.BillAsync(shop, child, "G-1", 50);
        await t.BillAsync(shop, primary, "G-2", 20);
        await t.PostOkAsync("/v1/returns", new { storeCode = shop.StoreCode, billNumber = "C-1", amount = 10m });
        db.Host.Clock.Set(new DateTimeOffset(2025, 3, 1, 10, 0, 0, TimeSpan.Zero));
        (await t.PostOkAsync("/v1/lifecycle/expire", new { })).GetProperty("expiries").GetInt32().ShouldBeGreaterThan(0);
        return new Busy(t, early, a, b, primary, child, groupId);
    }

    private Task<List<string>> StoredCountsAsync(long orgId) =>
        db.Database.ReadAsync(async c => (await c.QueryAsync<(string OwnerType, long OwnerId, long Events, long Points, long Currency)>(
            """
            SELECT owner_type, owner_id, events, points_events, currency_events FROM owner_event_counts
            WHERE org_id = @orgId ORDER BY owner_type, owner_id
            """, new { orgId })).Select(r => Line(r.OwnerType, r.OwnerId, r.Events, r.Points, r.Currency)).ToList(), CancellationToken.None);

    /// <summary>The counts by brute force: every event of each owner, and those holding a line of each kind.</summary>
    private Task<List<string>> CountedAsync(long orgId) =>
        db.Database.ReadAsync(async c => (await c.QueryAsync<(string OwnerType, long OwnerId, long Events, long Points, long Currency)>(
            """
            SELECT e.owner_type, e.owner_id, COUNT(*),
                SUM(CASE WHEN EXISTS (SELECT 1 FROM ledger_entries le WHERE le.event_id = e.event_id AND le.currency_id = 0) THEN 1 ELSE 0 END),
                SUM(CASE WHEN EXISTS (SELECT 1 FROM ledger_entries le WHERE le.event_id = e.event_id AND le.currency_id <> 0) THEN 1 ELSE 0 END)
            FROM events e WHERE e.org_id = @orgId
            GROUP BY e.owner_type, e.owner_id ORDER BY e.owner_type, e.owner_id
            """, new { orgId })).Select(r => Line(r.OwnerType, r.OwnerId, r.Events, r.Points, r.Currency)).ToList(), CancellationToken.None);

    [Fact]
    public async Task every_kind_of_posting_keeps_each_owners_counts_equal_to_its_events_and_lines()
    {
        var f = await BusyTenantAsync();

        var stored = await StoredCountsAsync(f.T.OrgId);
        stored.ShouldBe(await CountedAsync(f.T.OrgId));
        // Each kind of owner and line is exercised: the lineless registration, mixed events, the group.
        stored.ShouldContain(Line("CUSTOMER", f.Early, 1, 0, 0));
        stored.ShouldContain(s => s.StartsWith($"GROUP {f.GroupId}:", StringComparison.Ordinal));
        (await LedgerAudit.ViolationsAsync(db.Database, f.T.OrgId)).ShouldBeEmpty();
    }

    [Fact]
    public async Task total_entries_equals_the_counted_events_in_each_scope_for_customers_and_groups()
    {
        var f = await BusyTenantAsync();
        var counted = await db.Database.ReadAsync(c => c.QueryAsync<(string OwnerType, long OwnerId, long Events, long Points, long Currency)>(
            """
            SELECT e.owner_type, e.owner_id, COUNT(*),
                SUM(CASE WHEN EXISTS (SELECT 1 FROM ledger_entries le WHERE le.event_id = e.event_id AND le.currency_id = 0) THEN 1 ELSE 0 END),
                SUM(CASE WHEN EXISTS (SELECT 1 FROM ledger_entries le WHERE le.event_id = e.event_id AND le.currency_id <> 0) THEN 1 ELSE 0 END)
            FROM events e WHERE e.org_id = @orgId GROUP BY e.owner_type, e.owner_id
            """, new { orgId = f.T.OrgId }), CancellationToken.None);

        var owners = new[] { ("CUSTOMER", f.Early), ("CUSTOMER", f.A), ("CUSTOMER", f.B), ("CUSTOMER", f.Primary), ("CUSTOMER", f.Child), ("GROUP", f.GroupId) };
        foreach (var (ownerType, ownerId) in owners)
        {
            var expected = counted.SingleOrDefault(r => r.OwnerType == ownerType && r.OwnerId == ownerId);
            var who = ownerType == "GROUP"
                ? $"type=USERGROUP2&identifierName=id&identifierValue={ownerId}&source=INSTORE&limit=100"
                : LedgerApi.Customer(ownerId);
            foreach (var (scope, total) in new[]
            {
                ("", expected.Points),
                ("&includeAlternateCurrencies=true", expected.Events),
                ("&includeAlternateCurrencies=true&excludePointCategories=true", expected.Currency),
            })
            {
                if (total == 0)
                {
                    await f.T.LedgerFailsAsync(who + scope, 404, 11003);
                    continue;
                }
                var body = await f.T.LedgerOkAsync(who + scope);
                body.Total().ShouldBe(total, $"{ownerType} {ownerId}{scope}");
                body.Events().Count.ShouldBe((int)total);
            }
        }
    }

    [Fact]
    public async Task a_deep_page_read_from_the_other_end_with_the_counted_total_matches_the_same_slice_of_the_whole_history()
    {
        var f = await BusyTenantAsync();
        var everything = (await f.T.LedgerOkAsync(LedgerApi.Customer(f.A, "&includeAlternateCurrencies=true&sortOrder=ASC"))).EventIds();
        everything.Count.ShouldBeGreaterThan(6);

        var pages = (everything.Count + 2) / 3;
        for (var page = 0; page < pages; page++)
        {
            var body = await f.T.LedgerOkAsync(
                $"identifierName=id&identifierValue={f.A}&source=INSTORE&includeAlternateCurrencies=true&sortOrder=ASC&limit=3&offset={page}");
            body.Total().ShouldBe(everything.Count);
            body.EventIds().ShouldBe(everything.Skip(page * 3).Take(3).ToList(), $"page {page}");
        }
    }

    [Fact]
    public async Task an_event_posted_without_lines_counts_in_the_whole_ledger_but_in_neither_scope()
    {
        var f = await BusyTenantAsync();
        var before = await f.T.LedgerOkAsync(LedgerApi.Customer(f.A, "&includeAlternateCurrencies=true"));
        var points = (await f.T.LedgerOkAsync(LedgerApi.Customer(f.A))).Total();
        await db.Database.WriteAsync(async (c, tx) =>
        {
            var posting = new Posting(c, tx, db.Database.Dialect, f.T.OrgId, db.Host.Clock.GetUtcNow(), "test");
            return await posting.InsertEventAsync(new NewEvent(OwnerType.Customer, f.A, f.A, "NoteOnly"));
        }, CancellationToken.None);

        (await f.T.LedgerOkAsync(LedgerApi.Customer(f.A, "&includeAlternateCurrencies=true"))).Total().ShouldBe(before.Total() + 1);
        (await f.T.LedgerOkAsync(LedgerApi.Customer(f.A))).Total().ShouldBe(points);
        (await StoredCountsAsync(f.T.OrgId)).ShouldBe(await CountedAsync(f.T.OrgId));
    }

    [Fact]
    public async Task an_event_written_as_holding_points_that_gets_no_points_line_does_not_commit()
    {
        var f = await BusyTenantAsync();
        var before = await StoredCountsAsync(f.T.OrgId);
        var total = (await f.T.LedgerOkAsync(LedgerApi.Customer(f.A, "&includeAlternateCurrencies=true"))).Total();

        // Declared as holding points and currency lines, given only a currency line.
        var wrote = db.Database.WriteAsync(async (c, tx) =>
        {
            var posting = new Posting(c, tx, db.Database.Dialect, f.T.OrgId, db.Host.Clock.GetUtcNow(), "test");
            var (programId, starsId) = await StarsAsync(c, tx, f.T.OrgId);
            var key = new WalletKey(OwnerType.Customer, f.A, programId, starsId, PointCategory.Regular);
            await posting.LockWalletsAsync([key]);
            var eventId = await posting.InsertEventAsync(new NewEvent(OwnerType.Customer, f.A, f.A, "Declared",
                LineKinds: EventLineKinds.Points | EventLineKinds.Currency));
            return await posting.CreditAsync(eventId, key, new Points(1000), null);
        }, CancellationToken.None);

        (await Should.ThrowAsync<InvalidOperationException>(wrote)).Message.ShouldContain("has none");
        (await StoredCountsAsync(f.T.OrgId)).ShouldBe(before);
        (await f.T.LedgerOkAsync(LedgerApi.Customer(f.A, "&includeAlternateCurrencies=true"))).Total().ShouldBe(total);
    }

    /// <summary>Every page of <paramref name="scope"/> at 3 a page, in both orders, against the same slice of the whole history.</summary>
    private static async Task PagesMatchTheWholeHistoryAsync(Tenant t, long customerId, string scope)
    {
        foreach (var order in new[] { "ASC", "DESC" })
        {
            var everything = (await t.LedgerOkAsync(LedgerApi.Customer(customerId, $"{scope}&sortOrder={order}"))).EventIds();
            everything.Count.ShouldBeGreaterThan(3);
            var pages = (everything.Count + 2) / 3;
            for (var page = 0; page < pages; page++)
            {
                var body = await t.LedgerOkAsync(
                    $"identifierName=id&identifierValue={customerId}&source=INSTORE{scope}&sortOrder={order}&limit=3&offset={page}");
                body.Total().ShouldBe(everything.Count);
                body.EventIds().ShouldBe(everything.Skip(page * 3).Take(3).ToList(), $"{scope} {order} page {page}");
            }
        }
    }

    /// <summary>Each owner's numbered events as "TYPE id: event ids in number order | ...", points then currencies.</summary>
    private Task<string> NumbersAsync(long orgId, long ownerId) =>
        db.Database.ReadAsync(async c =>
        {
            var points = await c.QueryAsync<long>(
                "SELECT event_id FROM events WHERE org_id = @orgId AND owner_id = @ownerId AND points_seq IS NOT NULL ORDER BY points_seq", new { orgId, ownerId });
            var currency = await c.QueryAsync<long>(
                "SELECT event_id FROM events WHERE org_id = @orgId AND owner_id = @ownerId AND currency_seq IS NOT NULL ORDER BY currency_seq", new { orgId, ownerId });
            return string.Join(",", points) + " | " + string.Join(",", currency);
        }, CancellationToken.None);

    [Fact]
    public async Task pages_of_points_and_of_currencies_seek_by_number_and_show_the_same_slice_as_the_whole_history()
    {
        var f = await BusyTenantAsync();
        // Points only (the read's default) and currencies only are paged by the owner's event numbers.
        await PagesMatchTheWholeHistoryAsync(f.T, f.A, "");
        await PagesMatchTheWholeHistoryAsync(f.T, f.A, "&includeAlternateCurrencies=true&excludePointCategories=true");
        (await LedgerAudit.ViolationsAsync(db.Database, f.T.OrgId)).ShouldBeEmpty();
    }

    [Fact]
    public async Task a_date_window_is_a_range_of_numbers_and_its_pages_and_total_match_the_events_stamped_in_it()
    {
        // A day apart, several events on some days, points and currencies in turn, and one event
        // stamped back among days already posted (a posting that took the owner's lock late).
        var day1 = new DateTimeOffset(2025, 1, 1, 8, 0, 0, TimeSpan.Zero);
        db.Host.Clock.Set(day1);
        var t = await db.Host.NewTenantAsync();
        await t.NewShopAsync(earnRate: "1", currencies: ["Stars"]);
        var a = await t.NewCustomerAsync();
        foreach (var day in new[] { 0, 1, 1, 2, 3, 3, 3, 4, 5, 6, 6, 7, 8, 9, 4 })
        {
            db.Host.Clock.Set(day1.AddDays(day).AddMinutes(day));
            await t.AwardAsync(a, "1");
            if (day % 2 == 1) await t.AwardAsync(a, "2", "Stars");
        }
        var history = await db.Database.ReadAsync(c => c.QueryAsync<(long At, long Id, long? Points, long? Currency)>(
            "SELECT created_at, event_id, points_seq, currency_seq FROM events WHERE org_id = @orgId AND owner_id = @a ORDER BY created_at, event_id",
            new { orgId = t.OrgId, a }), CancellationToken.None);
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();

        // From the start of day 2 to the end of day 7: cuts the history on both sides.
        var (from, to) = (day1.AddDays(2).Date, day1.AddDays(7).Date.AddHours(23));
        var window = $"&startDate={from:yyyy-MM-ddTHH:mm:ss}&endDate={to:yyyy-MM-ddTHH:mm:ss}";
        foreach (var (scope, inScope) in new (string, Func<(long At, long Id, long? Points, long? Currency), bool>)[]
                 {
                     ("", h => h.Points is not null),
                     ("&includeAlternateCurrencies=true&excludePointCategories=true", h => h.Currency is not null),
                 })
        {
            var inWindow = history.Where(h => inScope(h) && h.At >= new DateTimeOffset(from, TimeSpan.Zero).ToUnixTimeMilliseconds()
                                              && h.At <= new DateTimeOffset(to, TimeSpan.Zero).ToUnixTimeMilliseconds()).Select(h => h.Id).ToList();
            inWindow.Count.ShouldBeGreaterThan(3, scope);
            inWindow.Count.ShouldBeLessThan(history.Count(inScope), scope);
            var whole = await t.LedgerOkAsync(LedgerApi.Customer(a, $"{scope}{window}&sortOrder=ASC"));
            whole.EventIds().ShouldBe(inWindow, scope);
            whole.Total().ShouldBe(inWindow.Count, scope);
            await PagesMatchTheWholeHistoryAsync(t, a, scope + window);
        }
        // A window with none of the owner's events holds no entries (the spec's 11003).
        await t.LedgerFailsAsync(LedgerApi.Customer(a, "&startDate=2024-01-01T00:00:00&endDate=2024-02-01T00:00:00"), 404, 11003);
    }

    [Fact]
    public async Task an_event_stamped_before_events_already_numbered_takes_its_place_and_moves_them_up()
    {
        var f = await BusyTenantAsync();
        var (programId, starsId) = await db.Database.ReadAsync(c => c.QuerySingleAsync<(long, long)>(
            "SELECT program_id, currency_id FROM currencies WHERE org_id = @orgId AND name = 'Stars'", new { orgId = f.T.OrgId }), CancellationToken.None);
        var points = new WalletKey(OwnerType.Customer, f.A, programId, WalletKey.PlainPoints, PointCategory.Regular);
        var stars = new WalletKey(OwnerType.Customer, f.A, programId, starsId, PointCategory.Regular);
        var history = await db.Database.ReadAsync(c => c.QueryAsync<long>(
            "SELECT created_at FROM events WHERE org_id = @orgId AND owner_id = @a ORDER BY created_at", new { orgId = f.T.OrgId, a = f.A }), CancellationToken.None);
        // Between the owner's first and last events: a posting that started before others of the same
        // owner took its lock (or a server whose clock is behind). One declares its lines; the other
        // is inserted without and gets a line of each kind after.
        var middle = DateTimeOffset.FromUnixTimeMilliseconds((history.First() + history.Last()) / 2);
        var declared = await db.Database.WriteAsync(async (c, tx) =>
        {
            var posting = new Posting(c, tx, db.Database.Dialect, f.T.OrgId, middle, "test");
            await posting.LockWalletsAsync([points, stars]);
            var eventId = await posting.InsertEventAsync(new NewEvent(OwnerType.Customer, f.A, f.A, "Late", LineKinds: EventLineKinds.Points | EventLineKinds.Currency));
            await posting.CreditAsync(eventId, points, new Points(1000), null);
            await posting.CreditAsync(eventId, stars, new Points(1000), null);
            return eventId;
        }, CancellationToken.None);
        var undeclared = await db.Database.WriteAsync(async (c, tx) =>
        {
            var posting = new Posting(c, tx, db.Database.Dialect, f.T.OrgId, middle.AddDays(-1), "test");
            await posting.LockWalletsAsync([points, stars]);
            var eventId = await posting.InsertEventAsync(new NewEvent(OwnerType.Customer, f.A, f.A, "Later"));
            await posting.CreditAsync(eventId, points, new Points(1000), null);
            await posting.CreditAsync(eventId, stars, new Points(1000), null);
            return eventId;
        }, CancellationToken.None);

        // Numbered by place: the verifier recounts every number from time and event id.
        (await LedgerAudit.ViolationsAsync(db.Database, f.T.OrgId)).ShouldBeEmpty();
        var numbers = await NumbersAsync(f.T.OrgId, f.A);
        var (pointsOrder, currencyOrder) = (numbers.Split(" | ")[0].Split(','), numbers.Split(" | ")[1].Split(','));
        var (d, u) = (declared.ToString(CultureInfo.InvariantCulture), undeclared.ToString(CultureInfo.InvariantCulture));
        // Neither is last: both went in among the events already numbered, the earlier-stamped first.
        pointsOrder[^1].ShouldNotBeOneOf(d, u);
        Array.IndexOf(pointsOrder, u).ShouldBeLessThan(Array.IndexOf(pointsOrder, d));
        Array.IndexOf(currencyOrder, u).ShouldBeLessThan(Array.IndexOf(currencyOrder, d));
        await PagesMatchTheWholeHistoryAsync(f.T, f.A, "");
        await PagesMatchTheWholeHistoryAsync(f.T, f.A, "&includeAlternateCurrencies=true&excludePointCategories=true");
    }

    [Fact]
    public async Task verify_reports_an_event_whose_number_is_not_its_place_in_its_owners_history()
    {
        var f = await BusyTenantAsync();
        await db.Database.WriteAsync((c, tx) => c.ExecuteAsync(
            "UPDATE events SET points_seq = 100 - points_seq WHERE org_id = @orgId AND owner_id = @a AND points_seq IS NOT NULL",
            new { orgId = f.T.OrgId, a = f.A }, tx), CancellationToken.None);

        (await LedgerAudit.ViolationsAsync(db.Database, f.T.OrgId)).ShouldContain(v => v.Contains("points_seq", StringComparison.Ordinal));
    }

    [Fact]
    public async Task the_migration_numbers_the_events_of_a_database_written_before_it()
    {
        var f = await BusyTenantAsync();
        var expected = await NumbersAsync(f.T.OrgId, f.A);
        await db.Database.WriteAsync(async (c, tx) =>
        {
            await c.ExecuteAsync("ALTER TABLE owner_event_counts DROP COLUMN last_event_at", transaction: tx);
            return await UndoEventNumbersAsync(c, tx);
        }, CancellationToken.None);

        await Migrations.ApplyAsync(db.Database, CancellationToken.None);

        (await NumbersAsync(f.T.OrgId, f.A)).ShouldBe(expected);
        (await LedgerAudit.ViolationsAsync(db.Database, f.T.OrgId)).ShouldBeEmpty();
        await PagesMatchTheWholeHistoryAsync(f.T, f.A, "");
    }

    [Fact]
    public async Task renumber_numbers_the_events_a_server_older_than_the_migration_wrote_after_it()
    {
        var f = await BusyTenantAsync();
        var expected = await NumbersAsync(f.T.OrgId, f.A);
        // An older server posting after `migrate`: its events carry no numbers, and its counter
        // upserts leave the latest numbered time where the migration put it.
        await db.Database.WriteAsync(async (c, tx) =>
        {
            await c.ExecuteAsync("""
                UPDATE events SET points_seq = NULL, currency_seq = NULL
                WHERE org_id = @orgId AND owner_id = @a AND created_at >= (SELECT MIN(created_at) FROM events WHERE org_id = @orgId AND owner_id = @a AND points_seq > 3)
                """, new { orgId = f.T.OrgId, a = f.A }, tx);
            return await c.ExecuteAsync("UPDATE owner_event_counts SET last_event_at = 0 WHERE org_id = @orgId AND owner_id = @a", new { orgId = f.T.OrgId, a = f.A }, tx);
        }, CancellationToken.None);
        var violations = await LedgerAudit.ViolationsAsync(db.Database, f.T.OrgId);
        violations.ShouldContain(v => v.Contains("points_seq", StringComparison.Ordinal));
        violations.ShouldContain(v => v.Contains("owner_event_counts.last_event_at", StringComparison.Ordinal));

        (await LoyaltyLedger.Server.Cli.Commands.RunAsync(["renumber", "--org", f.T.OrgId.ToString(CultureInfo.InvariantCulture), .. db.CommandLineArgs])).ShouldBe(0);

        (await NumbersAsync(f.T.OrgId, f.A)).ShouldBe(expected);
        (await LedgerAudit.ViolationsAsync(db.Database, f.T.OrgId)).ShouldBeEmpty();
        await PagesMatchTheWholeHistoryAsync(f.T, f.A, "");
        // On a sound ledger it changes nothing.
        (await PageNumbers.RenumberAsync(db.Database, f.T.OrgId, CancellationToken.None)).Total.ShouldBe(0);
    }

    /// <summary>The database as it was before migration 22 (but for owner_event_counts, which the caller handles): no numbers, no indexes, the migration not recorded.</summary>
    private static async Task<int> UndoEventNumbersAsync(System.Data.Common.DbConnection c, System.Data.Common.DbTransaction tx)
    {
        await c.ExecuteAsync("DROP INDEX ix_events_owner_points_seq", transaction: tx);
        await c.ExecuteAsync("DROP INDEX ix_events_owner_currency_seq", transaction: tx);
        await c.ExecuteAsync("ALTER TABLE events DROP COLUMN points_seq", transaction: tx);
        await c.ExecuteAsync("ALTER TABLE events DROP COLUMN currency_seq", transaction: tx);
        return await c.ExecuteAsync("DELETE FROM schema_migrations WHERE version = 22", transaction: tx);
    }

    private static Task<(long ProgramId, long CurrencyId)> StarsAsync(System.Data.Common.DbConnection c, System.Data.Common.DbTransaction tx, long orgId) =>
        c.QuerySingleAsync<(long, long)>("SELECT program_id, currency_id FROM currencies WHERE org_id = @orgId AND name = 'Stars'", new { orgId }, tx);

    [Fact]
    public async Task the_migration_backfills_the_counts_of_a_database_written_before_it()
    {
        var f = await BusyTenantAsync();
        var expected = await CountedAsync(f.T.OrgId);
        // The database as it was before migration 9: no table, the migration not recorded (and the
        // later one that adds to the table undone too, so it is applied again after it).
        await db.Database.WriteAsync(async (c, tx) =>
        {
            await UndoEventNumbersAsync(c, tx);
            await c.ExecuteAsync("DROP TABLE owner_event_counts", transaction: tx);
            return await c.ExecuteAsync("DELETE FROM schema_migrations WHERE version = 9", transaction: tx);
        }, CancellationToken.None);

        await Migrations.ApplyAsync(db.Database, CancellationToken.None);

        (await StoredCountsAsync(f.T.OrgId)).ShouldBe(expected);
        (await LedgerAudit.ViolationsAsync(db.Database, f.T.OrgId)).ShouldBeEmpty();
        (await f.T.LedgerOkAsync(LedgerApi.Customer(f.A, "&includeAlternateCurrencies=true"))).Total()
            .ShouldBe(long.Parse(expected.Single(s => s.StartsWith($"CUSTOMER {f.A}:", StringComparison.Ordinal)).Split(' ', '/')[2], CultureInfo.InvariantCulture));
    }
}

public sealed class OwnerEventCountTestsOnSqlite(SqliteDatabase db) : OwnerEventCountTests(db), IClassFixture<SqliteDatabase>;

public sealed class OwnerEventCountTestsOnPostgres(PostgresDatabase db) : OwnerEventCountTests(db), IClassFixture<PostgresDatabase>;
