using System.Text.Json;
using Dapper;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Ledger;

/// <summary>Each posting of the write API, end to end over HTTP, and the ledger lines it leaves.</summary>
public abstract class PostingTests(DatabaseFixture db)
{
    private static long Thousandths(JsonElement e, string property) => Points.Parse(e.GetProperty(property).GetString()!).Thousandths;

    [Fact]
    public async Task registering_a_customer_opens_every_wallet_at_zero_with_opening_balance_lines()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(currencies: ["Stars", "Stamps"]);
        var customer = await t.PostOkAsync("/v1/customers", new { firstName = "Ada", lastName = "L", email = "ada@example.com", mobile = "447700900001", externalId = "EXT-1", accountNumbers = new[] { "6001" } });
        var id = customer.GetProperty("customerId").GetInt64();

        var balances = await t.GetOkAsync($"/v1/customers/{id}/balances");
        balances.GetArrayLength().ShouldBe(3);
        balances.EnumerateArray().ShouldAllBe(b => b.GetProperty("balance").GetString() == "0.000");
        var lines = await db.Database.ReadAsync(c => c.QueryAsync<(string EventName, string EntryType, long Points)>(
            "SELECT ev.event_name, e.entry_type, e.points FROM ledger_entries e JOIN events ev ON ev.event_id = e.event_id WHERE e.org_id = @org AND e.owner_id = @id",
            new { org = t.OrgId, id }), CancellationToken.None);
        lines.Count().ShouldBe(3);
        lines.ShouldAllBe(l => l.EventName == "CustomerRegistration" && l.EntryType == "OPENING_BALANCE" && l.Points == 0);

        var found = await t.GetOkAsync("/v1/customers/lookup?identifierName=email&identifierValue=ada@example.com&source=INSTORE");
        found.GetProperty("customerId").GetInt64().ShouldBe(id);
        found.GetProperty("accountNumbers")[0].GetString().ShouldBe("6001");
        found.GetProperty("identifiers").EnumerateArray().Select(i => i.GetProperty("type").GetString()).ShouldBe(["email", "externalId", "id", "mobile"]);
        (await t.GetOkAsync($"/v1/customers/{id}")).GetProperty("email").GetString().ShouldBe("ada@example.com");
        (await t.GetOkAsync("/v1/customers/lookup?identifierName=externalId&identifierValue=EXT-1&source=ALL")).GetProperty("customerId").GetInt64().ShouldBe(id);
        shop.ProgramId.ShouldBePositive();
    }

    [Fact]
    public async Task a_lookup_by_an_identifier_of_two_customers_is_refused_not_answered_with_one_of_them()
    {
        var t = await db.Host.NewTenantAsync();
        var first = (await t.PostOkAsync("/v1/customers", new { firstName = "First", source = "MARTJACK", accountId = "shop-a", email = "shared@example.com" }))
            .GetProperty("customerId").GetInt64();
        var second = (await t.PostOkAsync("/v1/customers", new { firstName = "Second", source = "MARTJACK", accountId = "shop-b", email = "shared@example.com" }))
            .GetProperty("customerId").GetInt64();

        using var ambiguous = await t.Http.GetAsync("/v1/customers/lookup?identifierName=email&identifierValue=shared@example.com&source=MARTJACK");
        var problem = await Tenant.ShouldFailAsync(ambiguous, 409, "ambiguous_identifier");
        problem.GetProperty("detail").GetString()!.ShouldContain("accountId");
        problem.GetRawText().ShouldNotContain(first.ToString(System.Globalization.CultureInfo.InvariantCulture));
        using var acrossSources = await t.Http.GetAsync("/v1/customers/lookup?identifierName=email&identifierValue=shared@example.com&source=ALL");
        await Tenant.ShouldFailAsync(acrossSources, 409, "ambiguous_identifier");

        (await t.GetOkAsync("/v1/customers/lookup?identifierName=email&identifierValue=shared@example.com&source=MARTJACK&accountId=shop-b"))
            .GetProperty("customerId").GetInt64().ShouldBe(second);
    }

    [Fact]
    public async Task a_bill_earns_points_and_currencies_by_the_earn_rules_rounded_down_to_the_thousandth()
    {
        var t = await db.Host.NewTenantAsync();
        var program = await t.PostOkAsync("/v1/programs", new { name = "P", earnRate = "0.1", currencies = new[] { new { name = "Stars", earnRate = "0.5" } } });
        var programId = program.GetProperty("programId").GetInt64();
        await t.PostOkAsync("/v1/stores", new { code = "s1" });
        var customer = await t.NewCustomerAsync();

        var bill = await t.PostOkAsync("/v1/transactions", new { customerId = customer, billNumber = "B-1", amount = 200.005m, storeCode = "s1", programId });

        var entries = bill.GetProperty("entries");
        entries.GetArrayLength().ShouldBe(2);
        Thousandths(entries[0], "points").ShouldBe(20_000); // 200.005 x 0.1 = 20.0005 -> 20.000
        Thousandths(entries[1], "points").ShouldBe(100_002); // 200.005 x 0.5 = 100.0025 -> 100.002
        entries[1].GetProperty("currency").GetString().ShouldBe("Stars");
        (await t.BalanceAsync(customer, programId)).ShouldBe(20_000);
        (await t.BalanceAsync(customer, programId, "Stars")).ShouldBe(100_002);
    }

    [Fact]
    public async Task a_program_and_its_currencies_answer_their_earn_rate_by_the_name_they_are_given_it_by()
    {
        var t = await db.Host.NewTenantAsync();
        var created = await t.PostOkAsync("/v1/programs", new { name = "P", earnRate = "0.1", currencies = new[] { new { name = "Stars", earnRate = "0.5" } } });
        var programId = created.GetProperty("programId").GetInt64();
        var added = await t.PostOkAsync($"/v1/programs/{programId}/currencies", new { name = "Stamps", earnRate = "2" });
        var read = await t.GetOkAsync($"/v1/programs/{programId}");

        foreach (var program in new[] { created, read })
        {
            program.GetProperty("earnRate").GetString().ShouldBe("0.100");
            program.GetProperty("currencies")[0].GetProperty("earnRate").GetString().ShouldBe("0.500");
        }
        added.GetProperty("earnRate").GetString().ShouldBe("2.000");
        read.GetProperty("currencies")[1].GetProperty("earnRate").GetString().ShouldBe("2.000");
        foreach (var answer in new[] { created, added, read, await t.GetOkAsync("/v1/programs") })
            answer.GetRawText().ShouldNotContain("earnPerUnit");

        // The answer's old name is no second way in: like any unknown member, it is ignored.
        (await t.PostOkAsync("/v1/programs", new { name = "Q", earnPerUnit = "2" })).GetProperty("earnRate").GetString().ShouldBe("0.000");
    }

    [Fact]
    public async Task a_bill_with_explicit_awards_credits_each_award_as_its_own_line()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(earnRate: "0", currencies: ["Stars", "Stamps"]);
        var customer = await t.NewCustomerAsync();

        var bill = await t.PostOkAsync("/v1/transactions", new
        {
            customerId = customer, billNumber = "B-2", amount = 50, storeCode = shop.StoreCode, tillCode = shop.TillCode,
            awards = new object[] { new { points = "7.25" }, new { points = 3, currency = "Stamps" } },
        });

        bill.GetProperty("entries").GetArrayLength().ShouldBe(2);
        (await t.BalanceAsync(customer, shop.ProgramId)).ShouldBe(7_250);
        (await t.BalanceAsync(customer, shop.ProgramId, "Stamps")).ShouldBe(3_000);
    }

    /// <summary>
    /// A bill's credits to several wallets: on PostgreSQL every line, lot and balance of them is one
    /// statement (Posting.CreditEachAsync), on SQLite three statements per wallet. Either way each
    /// wallet has its own line, with its own lot, and its balance, its activity clock and its
    /// history count move as one credit at a time would move them.
    /// </summary>
    [Fact]
    public async Task a_bills_credits_to_several_wallets_each_leave_their_own_line_lot_balance_and_history_number()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(earnRate: "0", currencies: ["Stars", "Stamps"], expiry: new { kind = "DATE_EARNED", days = 30 });
        var earlier = new DateTimeOffset(2025, 3, 1, 9, 0, 0, TimeSpan.Zero);
        var later = earlier.AddHours(5);
        // Registered first, so that each bill is the customer's latest event when it is posted (an
        // event stamped before the owner's latest is placed by statements of its own).
        db.Host.Clock.Set(earlier.AddHours(-1));
        var customer = await t.NewCustomerAsync();
        object[] Awards(string points, string stars, string stamps) =>
            [new { points }, new { points = stars, currency = "Stars" }, new { points = stamps, currency = "Stamps" }];
        db.Host.Clock.Set(earlier);
        await t.PostOkAsync("/v1/transactions", new
        {
            customerId = customer, billNumber = "C-1", amount = 10, storeCode = shop.StoreCode, tillCode = shop.TillCode, programId = shop.ProgramId,
            awards = Awards("5", "6", "7"),
        });
        db.Host.Clock.Set(later);
        var bill = await t.PostOkAsync("/v1/transactions", new
        {
            customerId = customer, billNumber = "C-2", amount = 10, storeCode = shop.StoreCode, tillCode = shop.TillCode, programId = shop.ProgramId,
            awards = Awards("1.001", "2.002", "3.003"),
        });

        var entries = bill.GetProperty("entries").EnumerateArray().ToList();
        entries.Select(e => e.TryGetProperty("currency", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString() : null)
            .ShouldBe([null, "Stars", "Stamps"]);
        entries.Select(e => Thousandths(e, "balanceAfter")).ShouldBe([6_001L, 8_002L, 10_003L]);
        var lines = (await db.Database.ReadAsync(c => c.QueryAsync<(long EntryId, long WalletId, long Points, long BalanceAfter, long LotOriginal, long LotRemaining,
                long LotEarnedAt, long? LotExpiresAt, long WalletBalance, long? LastActivityAt, long HistoryCount, long? HistorySeq)>(
            """
            SELECT le.entry_id, le.wallet_id, le.points, le.balance_after, l.original, l.remaining, l.earned_at, l.expires_at,
                w.balance, w.last_activity_at, w.history_count, le.history_seq
            FROM ledger_entries le
            JOIN events ev ON ev.event_id = le.event_id
            JOIN lots l ON l.credit_entry_id = le.entry_id
            JOIN wallets w ON w.wallet_id = le.wallet_id
            WHERE le.org_id = @org AND ev.bill_id IS NOT NULL AND le.created_at = @at
            ORDER BY le.entry_id
            """, new { org = t.OrgId, at = later.ToUnixTimeMilliseconds() }), CancellationToken.None)).ToList();

        lines.Count.ShouldBe(3);
        lines.Select(l => l.Points).ShouldBe([1_001L, 2_002L, 3_003L]);
        lines.Select(l => l.BalanceAfter).ShouldBe([6_001L, 8_002L, 10_003L]);
        lines.ShouldAllBe(l => l.LotOriginal == l.Points && l.LotRemaining == l.Points && l.WalletBalance == l.BalanceAfter);
        lines.ShouldAllBe(l => l.LotEarnedAt == later.ToUnixTimeMilliseconds());
        // The program's points expire by its policy; its currencies, with none of their own, never.
        lines.Select(l => l.LotExpiresAt).ShouldBe([later.AddDays(30).ToUnixTimeMilliseconds(), null, null]);
        lines.ShouldAllBe(l => l.LastActivityAt == later.ToUnixTimeMilliseconds());
        lines.Select(l => l.WalletId).Distinct().Count().ShouldBe(3);
        // Only the points wallet keeps a history (the vault's): its second line is number 2.
        lines.Select(l => (l.HistoryCount, l.HistorySeq)).ShouldBe([(2L, (long?)2L), (0L, null), (0L, null)]);
        if (db.Database.Dialect.WritesRowsFromArrays)
        {
            // One statement wrote them: every line and lot carries the command id (cmin) it was
            // inserted by within its transaction, and they share one.
            var commands = await db.Database.ReadAsync(c => c.QueryAsync<string>(
                """
                SELECT le.cmin::text FROM ledger_entries le WHERE le.org_id = @org AND le.created_at = @at AND le.entry_type = 'CREDIT'
                UNION ALL
                SELECT l.cmin::text FROM lots l WHERE l.org_id = @org AND l.earned_at = @at
                """, new { org = t.OrgId, at = later.ToUnixTimeMilliseconds() }), CancellationToken.None);
            commands.Count().ShouldBe(6);
            commands.Distinct().Count().ShouldBe(1);
            // And the bill's link to its event went in the event's own insert statement.
            var link = await db.Database.ReadAsync(c => c.QuerySingleAsync<(string EventCommand, string BillCommand)>(
                "SELECT e.cmin::text, b.cmin::text FROM events e JOIN bills b ON b.org_id = e.org_id AND b.bill_id = e.bill_id WHERE e.org_id = @org AND e.created_at = @at",
                new { org = t.OrgId, at = later.ToUnixTimeMilliseconds() }), CancellationToken.None);
            link.BillCommand.ShouldBe(link.EventCommand);
            // So did the owner's counts that numbered the event (nothing after the event in the
            // posting counts an event again, so the counts' row is the version it wrote).
            var counted = await db.Database.ReadAsync(c => c.QuerySingleAsync<(string EventCommand, string CountsCommand)>(
                """
                SELECT e.cmin::text, n.cmin::text FROM events e
                JOIN owner_event_counts n ON n.org_id = e.org_id AND n.owner_type = e.owner_type AND n.owner_id = e.owner_id
                WHERE e.org_id = @org AND e.created_at = @at
                """, new { org = t.OrgId, at = later.ToUnixTimeMilliseconds() }), CancellationToken.None);
            counted.CountsCommand.ShouldBe(counted.EventCommand);
        }
        var linked = await db.Database.ReadAsync(c => c.QueryAsync<bool>(
            "SELECT b.event_id = e.event_id FROM events e JOIN bills b ON b.org_id = e.org_id AND b.bill_id = e.bill_id WHERE e.org_id = @org AND e.event_name = 'TransactionAdd'",
            new { org = t.OrgId }), CancellationToken.None);
        linked.ShouldBe([true, true]);
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
    }

    /// <summary>
    /// Credits that are no qualifying activity (a bulk allocation) to several wallets, written
    /// together as a bill's are: a wallet's activity clock keeps the time it had, and starts now only
    /// for a wallet that had none.
    /// </summary>
    [Fact]
    public async Task credits_that_are_no_activity_keep_each_wallets_clock_and_start_only_an_unset_one()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(earnRate: "0", currencies: ["Stars", "Stamps"]);
        var customer = await t.NewCustomerAsync();
        var billed = new DateTimeOffset(2025, 4, 1, 9, 0, 0, TimeSpan.Zero);
        var allocated = billed.AddDays(3);
        db.Host.Clock.Set(billed);
        await t.PostOkAsync("/v1/transactions", new
        {
            customerId = customer, billNumber = "A-1", amount = 10, storeCode = shop.StoreCode, tillCode = shop.TillCode, programId = shop.ProgramId,
            awards = new object[] { new { points = "4" }, new { points = "5", currency = "Stars" } },
        });
        db.Host.Clock.Set(allocated);
        await t.PostOkAsync("/v1/allocations", new
        {
            programId = shop.ProgramId, reason = "Goodwill",
            allocations = new object[]
            {
                new { customerId = customer, points = "1" }, new { customerId = customer, points = "2", currency = "Stars" },
                new { customerId = customer, points = "3", currency = "Stamps" },
            },
        });

        var clocks = (await db.Database.ReadAsync(c => c.QueryAsync<(long CurrencyId, long Balance, long? LastActivityAt)>(
            "SELECT currency_id, balance, last_activity_at FROM wallets WHERE org_id = @org AND owner_id = @customer AND category = 'REGULAR' ORDER BY currency_id",
            new { org = t.OrgId, customer }), CancellationToken.None)).ToList();
        clocks.Select(w => w.Balance).ShouldBe([5_000L, 7_000L, 3_000L]);
        clocks.Select(w => w.LastActivityAt).ShouldBe([billed.ToUnixTimeMilliseconds(), billed.ToUnixTimeMilliseconds(), allocated.ToUnixTimeMilliseconds()]);
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
    }

    [Fact]
    public async Task a_redemption_consumes_lots_earliest_expiry_first_and_records_each_lot()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(expiry: new { kind = "DATE_EARNED", days = 30 });
        var customer = await t.NewCustomerAsync();
        db.Host.Clock.Set(new DateTimeOffset(2025, 1, 1, 0, 0, 0, TimeSpan.Zero));
        await t.AwardAsync(customer, "40");
        db.Host.Clock.Set(new DateTimeOffset(2025, 1, 10, 0, 0, 0, TimeSpan.Zero));
        await t.AwardAsync(customer, "60");

        var redemption = await t.PostOkAsync("/v1/redemptions", new { customerId = customer, points = "50", programId = shop.ProgramId });

        Thousandths(redemption.GetProperty("entries")[0], "balanceAfter").ShouldBe(50_000);
        var lots = (await db.Database.ReadAsync(c => c.QueryAsync<(long Original, long Remaining)>(
            "SELECT original, remaining FROM lots WHERE org_id = @org ORDER BY expires_at", new { org = t.OrgId }), CancellationToken.None)).ToList();
        lots.ShouldBe([(40_000L, 0L), (60_000L, 50_000L)]);
        var movements = await db.Database.ReadAsync(c => c.QueryAsync<long>(
            "SELECT m.points FROM lot_movements m JOIN ledger_entries e ON e.entry_id = m.entry_id WHERE e.org_id = @org AND e.entry_type = 'DEBIT' ORDER BY m.movement_id",
            new { org = t.OrgId }), CancellationToken.None);
        movements.ShouldBe([40_000L, 10_000L]);
        var wallet = await db.Database.ReadAsync(c => c.QuerySingleAsync<long>(
            "SELECT balance FROM wallets WHERE org_id = @org AND owner_id = @customer AND program_id = @program AND currency_id = 0",
            new { org = t.OrgId, customer, program = shop.ProgramId }), CancellationToken.None);
        wallet.ShouldBe(50_000);
        if (db.Database.Dialect.WritesRowsFromArrays)
        {
            // The lots taken, their movements and the wallet's balance went as one statement: the
            // movements and the wallet's row carry one command id (cmin).
            var commands = await db.Database.ReadAsync(c => c.QueryAsync<string>(
                """
                SELECT m.cmin::text FROM lot_movements m JOIN ledger_entries e ON e.entry_id = m.entry_id WHERE e.org_id = @org AND e.entry_type = 'DEBIT'
                UNION ALL
                SELECT w.cmin::text FROM wallets w WHERE w.org_id = @org AND w.owner_id = @customer AND w.program_id = @program AND w.currency_id = 0
                """, new { org = t.OrgId, customer, program = shop.ProgramId }), CancellationToken.None);
            commands.Count().ShouldBe(3);
            commands.Distinct().Count().ShouldBe(1);
        }
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
    }

    [Fact]
    public async Task a_redemption_that_empties_the_dated_lots_goes_on_with_the_oldest_undated()
    {
        // A debit reads a wallet's first 16 dated and first 16 undated open lots; once it has read every
        // dated lot, the undated ones it read come next.
        var (t, shop, customer) = await TwentyOneLotsTheFirstFourUndatedAsync();
        Task<List<long>> Remaining() => LotsRemainingAsync(t);
        long[] Lots(params long[] points) => points.Select(p => p * 1_000).ToArray();

        // 3 points: the first read covers it, from the earliest dated lot on.
        await t.PostOkAsync("/v1/redemptions", new { customerId = customer, points = "3", programId = shop.ProgramId });
        (await Remaining()).ShouldBe(Lots(1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1));

        // 16 points: 14 dated lots are left, fewer than the read's 16, so the undated lots read next
        // follow them: the 14, then the two oldest undated.
        await t.PostOkAsync("/v1/redemptions", new { customerId = customer, points = "16", programId = shop.ProgramId });
        (await Remaining()).ShouldBe(Lots(0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0));
        (await t.BalanceAsync(customer, shop.ProgramId)).ShouldBe(2_000);
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
    }

    [Fact]
    public async Task a_redemption_past_every_dated_lot_the_first_read_holds_reads_the_rest_before_the_undated()
    {
        // 17 dated lots, more than the first read's 16, and 4 undated: 18 points take the 16 read
        // first, the 17th dated lot that only the second read sees, and then one undated lot.
        var (t, shop, customer) = await TwentyOneLotsTheFirstFourUndatedAsync();

        await t.PostOkAsync("/v1/redemptions", new { customerId = customer, points = "18", programId = shop.ProgramId });

        (await LotsRemainingAsync(t)).ShouldBe([0L, 1_000, 1_000, 1_000, .. Enumerable.Repeat(0L, 17)]);
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
    }

    [Fact]
    public async Task a_redemption_covered_by_the_undated_lots_read_first_takes_them_after_every_dated_one_and_beyond_them_reads_the_rest()
    {
        // 1 dated lot and 20 undated, more than the 16 a debit reads first. 4 points take the dated lot
        // and the 3 oldest undated, all from the first read. 16.5 points are more than the 16 undated
        // lots read first: the rest is read, and the 17th lot gives the last half point.
        var (t, shop, customer) = await TwentyOneLotsTheFirstFourUndatedAsync();
        await db.Database.WriteAsync((c, tx) => c.ExecuteAsync(
            "UPDATE lots SET expires_at = NULL WHERE org_id = @org AND lot_id IN (SELECT lot_id FROM lots WHERE org_id = @org ORDER BY lot_id LIMIT 20)",
            new { org = t.OrgId }, tx), CancellationToken.None);

        await t.PostOkAsync("/v1/redemptions", new { customerId = customer, points = "4", programId = shop.ProgramId });
        (await LotsRemainingAsync(t)).ShouldBe([0L, 0, 0, .. Enumerable.Repeat(1_000L, 17), 0]);

        await t.PostOkAsync("/v1/redemptions", new { customerId = customer, points = "16.5", programId = shop.ProgramId });
        (await LotsRemainingAsync(t)).ShouldBe([.. Enumerable.Repeat(0L, 19), 500, 0]);
        (await t.BalanceAsync(customer, shop.ProgramId)).ShouldBe(500);
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
    }

    /// <summary>
    /// A customer with 21 open lots of 1 point, earned an hour apart in a program whose points expire,
    /// the 4 earliest then made undated (as a repaid debt that a reversal restores comes back), so
    /// that they are the last a debit takes.
    /// </summary>
    private async Task<(Tenant Tenant, Shop Shop, long Customer)> TwentyOneLotsTheFirstFourUndatedAsync()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(expiry: new { kind = "DATE_EARNED", days = 30 });
        var customer = await t.NewCustomerAsync();
        db.Host.Clock.Set(new DateTimeOffset(2025, 1, 1, 0, 0, 0, TimeSpan.Zero));
        for (var i = 0; i < 21; i++)
        {
            await t.AwardAsync(customer, "1");
            db.Host.Clock.Advance(TimeSpan.FromHours(1));
        }
        await db.Database.WriteAsync((c, tx) => c.ExecuteAsync(
            "UPDATE lots SET expires_at = NULL WHERE org_id = @org AND lot_id IN (SELECT lot_id FROM lots WHERE org_id = @org ORDER BY lot_id LIMIT 4)",
            new { org = t.OrgId }, tx), CancellationToken.None);
        return (t, shop, customer);
    }

    /// <summary>What each of the organization's lots holds, in the order they were created.</summary>
    private async Task<List<long>> LotsRemainingAsync(Tenant t) => (await db.Database.ReadAsync(c => c.QueryAsync<long>(
        "SELECT remaining FROM lots WHERE org_id = @org ORDER BY lot_id", new { org = t.OrgId }), CancellationToken.None)).ToList();

    [Fact]
    public async Task a_debit_beyond_every_open_lot_of_a_long_history_empties_them_all_and_owes_the_rest()
    {
        // More open lots than a debit reads first, in a program that allows negative balances: the
        // shortfall is what no lot covers once every one of them has been read.
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(allowNegative: true);
        var customer = await t.NewCustomerAsync();
        for (var i = 0; i < 20; i++) await t.AwardAsync(customer, "1");

        await t.PostOkAsync("/v1/redemptions", new { customerId = customer, points = "25", programId = shop.ProgramId });

        (await t.BalanceAsync(customer, shop.ProgramId)).ShouldBe(-5_000);
        var lots = (await db.Database.ReadAsync(c => c.QueryAsync<(long IsDebt, long Remaining)>(
            "SELECT is_debt, remaining FROM lots WHERE org_id = @org ORDER BY lot_id", new { org = t.OrgId }), CancellationToken.None)).ToList();
        lots.Where(l => l.IsDebt == 0).ShouldAllBe(l => l.Remaining == 0);
        lots.Where(l => l.IsDebt == 1).Select(l => l.Remaining).ShouldBe([-5_000L]);
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
    }

    [Fact]
    public async Task a_bulk_allocation_posts_one_event_per_customer()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync();
        var a = await t.NewCustomerAsync();
        var b = await t.NewCustomerAsync();

        var result = await t.PostOkAsync("/v1/allocations", new
        {
            programId = shop.ProgramId, reason = "Goodwill",
            allocations = new object[] { new { customerId = a, points = "2000" }, new { customerId = b, points = "5" }, new { customerId = b, points = "1", currency = "Stars" } },
        });

        result.GetArrayLength().ShouldBe(2);
        result.EnumerateArray().ShouldAllBe(r => r.GetProperty("eventName").GetString() == "BulkAllocatePoints");
        (await t.BalanceAsync(a, shop.ProgramId)).ShouldBe(2_000_000);
        (await t.BalanceAsync(b, shop.ProgramId)).ShouldBe(5_000);
        (await t.BalanceAsync(b, shop.ProgramId, "Stars")).ShouldBe(1_000);
    }

    [Fact]
    public async Task a_generic_event_keeps_its_display_name_in_the_event_details()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(currencies: ["Tier-points"]);
        var customer = await t.NewCustomerAsync();

        var posted = await t.PostOkAsync("/v1/events", new { customerId = customer, eventName = "ThankYouSanta", awards = new[] { new { points = "100", currency = "Tier-points" } } });

        posted.GetProperty("eventName").GetString().ShouldBe("GenericEvent");
        var details = await db.Database.ReadAsync(c => c.ExecuteScalarAsync<string>(
            "SELECT details FROM events WHERE event_id = @id", new { id = posted.GetProperty("eventId").GetInt64() }), CancellationToken.None);
        JsonDocument.Parse(details!).RootElement.GetProperty("eventDisplayName").GetString().ShouldBe("ThankYouSanta");
        (await t.BalanceAsync(customer, shop.ProgramId, "Tier-points")).ShouldBe(100_000);
    }

    [Fact]
    public async Task a_transfer_moves_points_in_two_linked_events_and_the_new_lots_keep_the_old_expiry()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(expiry: new { kind = "DATE_EARNED", days = 10 });
        var a = await t.NewCustomerAsync();
        var b = await t.NewCustomerAsync();
        db.Host.Clock.Set(new DateTimeOffset(2025, 5, 1, 0, 0, 0, TimeSpan.Zero));
        await t.AwardAsync(a, "30");
        db.Host.Clock.Set(new DateTimeOffset(2025, 5, 5, 0, 0, 0, TimeSpan.Zero));

        var transfer = await t.PostOkAsync("/v1/transfers", new { from = new { customerId = a }, to = new { customerId = b }, points = "12", programId = shop.ProgramId });

        (await t.BalanceAsync(a, shop.ProgramId)).ShouldBe(18_000);
        (await t.BalanceAsync(b, shop.ProgramId)).ShouldBe(12_000);
        var debitEvent = transfer.GetProperty("debitEventId").GetInt64();
        var creditEvent = transfer.GetProperty("creditEventId").GetInt64();
        var links = await db.Database.ReadAsync(c => c.QueryAsync<(long EventId, long Related)>(
            "SELECT event_id, related_event_id FROM events WHERE event_id IN (@debitEvent, @creditEvent) ORDER BY event_id", new { debitEvent, creditEvent }), CancellationToken.None);
        links.ShouldBe([(debitEvent, creditEvent), (creditEvent, debitEvent)]);
        var expiry = await db.Database.ReadAsync(c => c.ExecuteScalarAsync<long>(
            "SELECT l.expires_at FROM lots l JOIN wallets w ON w.wallet_id = l.wallet_id WHERE w.org_id = @org AND w.owner_id = @b", new { org = t.OrgId, b }), CancellationToken.None);
        expiry.ShouldBe(new DateTimeOffset(2025, 5, 11, 0, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds());
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
    }

    [Fact]
    public async Task a_pooling_group_collects_its_members_bills_and_a_member_may_redeem_from_it()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(earnRate: "1");
        var primary = await t.NewCustomerAsync();
        var child = await t.NewCustomerAsync();
        var group = await t.PostOkAsync("/v1/groups", new
        {
            name = "Family", primaryCustomerId = primary, externalId = "fam-1",
            members = new[] { new { customerId = child, role = "SECONDARY", mayRedeem = false } },
        });
        var groupId = group.GetProperty("groupId").GetInt64();

        await t.BillAsync(shop, child, "G-1", 30);
        await t.BillAsync(shop, primary, "G-2", 20);

        var groupBalance = await t.GetOkAsync($"/v1/groups/{groupId}/balances");
        groupBalance[0].GetProperty("balance").GetString().ShouldBe("50.000");
        (await t.BalanceAsync(child, shop.ProgramId)).ShouldBe(0);

        using var refused = await t.PostAsync("/v1/redemptions", new { customerId = child, groupId, points = "5" });
        await Tenant.ShouldFailAsync(refused, 403, "not_permitted");
        await t.PostOkAsync("/v1/redemptions", new { customerId = primary, groupId, points = "45" });
        (await t.GetOkAsync($"/v1/groups/{groupId}/balances"))[0].GetProperty("balance").GetString().ShouldBe("5.000");
    }

    [Fact]
    public async Task a_program_that_allows_negative_balances_holds_the_shortfall_as_debt_repaid_by_the_next_credit()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(allowNegative: true);
        var customer = await t.NewCustomerAsync();
        await t.AwardAsync(customer, "10");

        await t.PostOkAsync("/v1/redemptions", new { customerId = customer, points = "25", programId = shop.ProgramId });
        (await t.BalanceAsync(customer, shop.ProgramId)).ShouldBe(-15_000);
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();

        await t.AwardAsync(customer, "20");
        (await t.BalanceAsync(customer, shop.ProgramId)).ShouldBe(5_000);
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
    }

    [Fact]
    public async Task every_wallet_balance_equals_its_entries_and_its_lots_after_a_mixed_day_of_postings()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(earnRate: "0.25", expiry: new { kind = "DATE_EARNED", months = 12, endOfMonth = true });
        var customers = new List<long>();
        for (var i = 0; i < 4; i++) customers.Add(await t.NewCustomerAsync());
        var random = new Random(7);
        for (var step = 0; step < 40; step++)
        {
            var who = customers[random.Next(customers.Count)];
            var other = customers[random.Next(customers.Count)];
            db.Host.Clock.Advance(TimeSpan.FromHours(random.Next(1, 48)));
            switch (random.Next(4))
            {
                case 0: await t.BillAsync(shop, who, $"M-{step}", random.Next(1, 500)); break;
                case 1: await t.AwardAsync(who, $"{random.Next(1, 50)}.{random.Next(0, 1000):000}"); break;
                case 2: using (await t.PostAsync("/v1/redemptions", new { customerId = who, points = random.Next(1, 30).ToString(System.Globalization.CultureInfo.InvariantCulture) })) { } break;
                default:
                    if (who != other)
                        using (await t.PostAsync("/v1/transfers", new { from = new { customerId = who }, to = new { customerId = other }, points = "3.5" })) { }
                    break;
            }
        }

        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
    }

    [Fact]
    public async Task the_openapi_document_describes_the_write_api()
    {
        var json = await db.Host.Client().GetStringAsync("/openapi/v1.json");
        var paths = JsonDocument.Parse(json).RootElement.GetProperty("paths");
        foreach (var path in new[] { "/v1/transactions", "/v1/redemptions", "/v1/allocations", "/v1/events", "/v1/transfers", "/v1/customers", "/v1/groups", "/v1/programs" })
            paths.TryGetProperty(path, out _).ShouldBeTrue(path);
    }
}

public sealed class PostingTestsOnSqlite(SqliteDatabase db) : PostingTests(db), IClassFixture<SqliteDatabase>;

public sealed class PostingTestsOnPostgres(PostgresDatabase db) : PostingTests(db), IClassFixture<PostgresDatabase>;
