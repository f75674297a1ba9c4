using LoyaltyLedger.Ledger;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.PointsLedger;

/// <summary>The user-group ledger (type=USERGROUP2): the pooled wallet's events with the member behind each.</summary>
public abstract class GroupLedgerTests(DatabaseFixture db)
{
    private sealed record Family(Tenant T, long GroupId, long Primary, long Secondary, long Child, long ProgramId);

    /// <summary>
    /// A pooling group of three; each member pays a bill (points and Stars into the pool), the
    /// primary member redeems from the pool.
    /// </summary>
    private async Task<Family> FamilyAsync()
    {
        var t = await db.Host.NewTenantAsync();
        db.Host.Clock.Set(new DateTimeOffset(2024, 3, 1, 9, 0, 0, TimeSpan.Zero));
        var (programId, _) = await t.NewProgramAsync("Family program", earnRate: "0.1", currencyEarnRate: "0.5", currencies: "Stars");
        await t.PostOkAsync("/v1/stores", new { code = "store-1" });
        await t.PostOkAsync("/v1/tills", new { code = "till-1", storeCode = "store-1" });
        var primary = await t.NewCustomerAsync(firstName: "Pat");
        var secondary = await t.NewCustomerAsync(firstName: "Sam");
        var child = await t.NewCustomerAsync(firstName: "Kim");
        var group = await t.PostOkAsync("/v1/groups", new
        {
            name = "The Family", primaryCustomerId = primary, externalId = "fam-" + t.OrgId,
            members = new object[] { new { customerId = secondary, role = "SECONDARY" }, new { customerId = child, role = "CHILD" } },
        });
        var groupId = group.GetProperty("groupId").GetInt64();
        var i = 0;
        foreach (var member in new[] { primary, secondary, child })
        {
            db.Host.Clock.Advance(TimeSpan.FromDays(1));
            await t.PostOkAsync("/v1/transactions", new { customerId = member, billNumber = $"G-{i++}", amount = 100m, storeCode = "store-1", tillCode = "till-1", programId });
        }
        db.Host.Clock.Advance(TimeSpan.FromDays(1));
        await t.PostOkAsync("/v1/redemptions", new { customerId = primary, groupId, points = "5", programId });
        return new Family(t, groupId, primary, secondary, child, programId);
    }

    private static string Group(string name, object value, string extra = "") =>
        $"type=USERGROUP2&identifierName={name}&identifierValue={value}&source=INSTORE{extra}";

    [Fact]
    public async Task the_specs_group_request_reads_the_pooled_wallet_oldest_first()
    {
        var f = await FamilyAsync();
        var body = await f.T.LedgerOkAsync($"type=USERGROUP2&identifierName=id&identifierValue={f.GroupId}&source=INSTORE&offset=0&limit=10&sortOrder=ASC");

        var details = body.GetProperty("customerDetails");
        details.GetProperty("userId").GetInt64().ShouldBe(f.GroupId);
        details.GetProperty("firstName").GetString().ShouldBe("The Family");
        details.GetProperty("entityType").GetString().ShouldBe("FLEET");
        var page = body.GetProperty("ledgerDetails");
        page.GetProperty("pageNumber").GetInt32().ShouldBe(0);
        page.GetProperty("pageSize").GetInt32().ShouldBe(10);
        page.GetProperty("totalEntries").GetInt64().ShouldBe(4);
        page.GetProperty("pageCount").GetInt64().ShouldBe(1);
        body.EventNames().ShouldBe(["TransactionAdd", "TransactionAdd", "TransactionAdd", "PointsRedemption"]);
        body.Events().Select(e => e.GetProperty("customerId").GetInt64()).ShouldBe([f.Primary, f.Secondary, f.Child, f.Primary]);
        body.Lines().ShouldBe(["points/Main/CREDIT/10.000", "points/Main/CREDIT/10.000", "points/Main/CREDIT/10.000", "points/Main/DEBIT/5.000"]);
    }

    [Theory]
    [InlineData("id")]
    [InlineData("groupId")]
    [InlineData("externalId")]
    [InlineData("primaryUserId")]
    public async Task identifier_name_finds_the_group_by_each_identifier_type(string name)
    {
        var f = await FamilyAsync();
        object value = name switch { "externalId" => "fam-" + f.T.OrgId, "primaryUserId" => f.Primary, _ => f.GroupId };
        var body = await f.T.LedgerOkAsync(Group(name, value));
        body.GetProperty("customerDetails").GetProperty("userId").GetInt64().ShouldBe(f.GroupId);
        body.Total().ShouldBe(4);
    }

    [Fact]
    public async Task each_entry_carries_the_member_and_their_role()
    {
        var f = await FamilyAsync();
        var events = (await f.T.LedgerOkAsync(Group("groupId", f.GroupId, "&sortOrder=ASC"))).Events();
        var member = events[2].GetProperty("customerDetails");
        member.GetProperty("userId").GetInt64().ShouldBe(f.Child);
        member.GetProperty("firstName").GetString().ShouldBe("Kim");
        member.GetProperty("role").GetString().ShouldBe("CHILD");
        events[0].GetProperty("customerDetails").GetProperty("role").GetString().ShouldBe("PRIMARY");
    }

    [Theory]
    [InlineData("PRIMARY", 2)]
    [InlineData("secondary", 1)]
    [InlineData("CHILD", 1)]
    public async Task role_keeps_the_events_of_members_with_that_role(string role, int events)
    {
        var f = await FamilyAsync();
        var body = await f.T.LedgerOkAsync(Group("groupId", f.GroupId, "&role=" + role));
        body.Total().ShouldBe(events);
        body.Events().ShouldAllBe(e => e.GetProperty("customerDetails").GetProperty("role").GetString() == role.ToUpperInvariant());
        await f.T.LedgerFailsAsync(Group("groupId", f.GroupId, "&role=GRANDPARENT"), 404, 11003);
    }

    [Fact]
    public async Task a_transfer_into_the_pool_from_a_customer_outside_the_group_names_that_customer()
    {
        var f = await FamilyAsync();
        var outsider = await f.T.NewCustomerAsync(firstName: "Olga");
        await f.T.AwardAsync(outsider, "20", programId: f.ProgramId);
        db.Host.Clock.Advance(TimeSpan.FromDays(1));
        await f.T.PostOkAsync("/v1/transfers", new { from = new { customerId = outsider }, to = new { groupId = f.GroupId }, points = "8", programId = f.ProgramId });

        var transfer = (await f.T.LedgerOkAsync(Group("groupId", f.GroupId))).Events()[0];

        transfer.GetProperty("eventName").GetString().ShouldBe("PointsTransfer");
        transfer.GetProperty("customerId").GetInt64().ShouldBe(outsider);
        var sender = transfer.GetProperty("customerDetails");
        sender.GetProperty("userId").GetInt64().ShouldBe(outsider);
        sender.GetProperty("firstName").GetString().ShouldBe("Olga");
        sender.TryGetProperty("role", out _).ShouldBeFalse();
    }

    [Fact]
    public async Task role_primary_returns_only_the_events_the_primary_member_made()
    {
        var t = await db.Host.NewTenantAsync();
        db.Host.Clock.Set(new DateTimeOffset(2024, 3, 1, 9, 0, 0, TimeSpan.Zero));
        var programId = (await t.PostOkAsync("/v1/programs", new { name = "Expiring program", earnRate = "0.1", expiry = new { kind = "DATE_EARNED", days = 30 } }))
            .GetProperty("programId").GetInt64();
        await t.PostOkAsync("/v1/stores", new { code = "store-1" });
        var primary = await t.NewCustomerAsync(firstName: "Pat");
        var secondary = await t.NewCustomerAsync(firstName: "Sam");
        var outsider = await t.NewCustomerAsync(firstName: "Olga");
        var groupId = (await t.PostOkAsync("/v1/groups", new
        {
            name = "The Family", primaryCustomerId = primary, members = new object[] { new { customerId = secondary, role = "SECONDARY" } },
        })).GetProperty("groupId").GetInt64();

        await t.PostOkAsync("/v1/transactions", new { customerId = primary, billNumber = "P-1", amount = 100m, storeCode = "store-1", programId });
        await t.AwardAsync(secondary, "10", programId: programId);
        await t.AwardAsync(outsider, "10", programId: programId);
        await t.PostOkAsync("/v1/transfers", new { from = new { customerId = secondary }, to = new { groupId }, points = "4", programId });
        await t.PostOkAsync("/v1/transfers", new { from = new { customerId = outsider }, to = new { groupId }, points = "5", programId });
        await t.PostOkAsync("/v1/transfers", new { from = new { groupId }, to = new { customerId = outsider }, points = "2", programId });
        db.Host.Clock.Advance(TimeSpan.FromDays(60));
        await t.PostOkAsync("/v1/lifecycle/expire", new { });

        var all = (await t.LedgerOkAsync(Group("groupId", groupId, "&sortOrder=ASC"))).Events()
            .Select(e => $"{e.GetProperty("eventName").GetString()} by {e.GetProperty("customerId").GetInt64()}").ToList();
        all.ShouldBe([
            $"TransactionAdd by {primary}",
            $"PointsTransfer by {secondary}",
            $"PointsTransfer by {outsider}",
            "PointsTransfer by 0",
            "PointsExpiry by 0",
        ]);
        (await t.LedgerOkAsync(Group("groupId", groupId, "&role=PRIMARY"))).EventNames().ShouldBe(["TransactionAdd"]);
        (await t.LedgerOkAsync(Group("groupId", groupId, "&role=SECONDARY"))).EventNames().ShouldBe(["PointsTransfer"]);
    }

    [Fact]
    public async Task sort_orders_the_group_ledger_both_ways()
    {
        var f = await FamilyAsync();
        var asc = (await f.T.LedgerOkAsync(Group("groupId", f.GroupId, "&sort=ASC"))).EventIds();
        var desc = (await f.T.LedgerOkAsync(Group("groupId", f.GroupId, "&sort=DESC"))).EventIds();
        desc.ShouldBe(asc.Reverse().ToList());
        (await f.T.LedgerOkAsync(Group("groupId", f.GroupId))).EventIds().ShouldBe(desc);
    }

    [Fact]
    public async Task limit_and_offset_page_the_group_ledger()
    {
        var f = await FamilyAsync();
        var all = (await f.T.LedgerOkAsync(Group("groupId", f.GroupId))).EventIds();
        var pages = new List<long>();
        for (var page = 0; page < 2; page++)
        {
            var body = await f.T.LedgerOkAsync(Group("groupId", f.GroupId, $"&limit=3&offset={page}"));
            body.GetProperty("ledgerDetails").GetProperty("pageCount").GetInt64().ShouldBe(2);
            pages.AddRange(body.EventIds());
        }
        pages.ShouldBe(all);
        await f.T.LedgerFailsAsync(Group("groupId", f.GroupId, "&limit=3&offset=2"), 404, 11003);
    }

    private const string Bill = "points/Main/CREDIT/10.000";
    private const string Stars = "Stars/Main/CREDIT/50.000";
    private const string Redeemed = "points/Main/DEBIT/5.000";
    private const string Promised = "points/DelayedAccrualPointCategory/CREDIT/7.000";

    /// <summary>The spec's behaviour table on a group's pool that also holds 7 PROMISED points.</summary>
    [Theory]
    [InlineData(1, "&includeAlternateCurrencies=true&pointCategoryType=PROMISED", new[] { Promised })]
    [InlineData(1, "&includeAlternateCurrencies=true&pointCategoryType=REGULAR&excludePointCategories=false", new[] { Bill, Bill, Bill, Redeemed, Stars, Stars, Stars })]
    [InlineData(2, "&includeAlternateCurrencies=true", new[] { Bill, Bill, Bill, Redeemed, Promised, Stars, Stars, Stars })]
    [InlineData(3, "&includeAlternateCurrencies=true&excludePointCategories=true", new[] { Stars, Stars, Stars })]
    [InlineData(4, "&includeAlternateCurrencies=true&pointCategoryType=REGULAR&excludePointCategories=true", new[] { Stars, Stars, Stars })]
    [InlineData(5, "", new[] { Bill, Bill, Bill, Redeemed, Promised })]
    [InlineData(5, "&includeAlternateCurrencies=false&excludePointCategories=false", new[] { Bill, Bill, Bill, Redeemed, Promised })]
    [InlineData(6, "&pointCategoryType=PROMISED", new[] { Promised })]
    [InlineData(6, "&pointCategoryType=REGULAR&includeAlternateCurrencies=false", new[] { Bill, Bill, Bill, Redeemed })]
    public async Task the_behaviour_table_row_applies_to_a_groups_pool(int row, string flags, string[] lines)
    {
        var f = await FamilyAsync();
        await db.CreditCategoryAsync(f.T, f.Child, f.ProgramId, 0, PointCategory.Promised, 7, groupId: f.GroupId);
        var body = await f.T.LedgerOkAsync(Group("groupId", f.GroupId, flags));
        body.Lines().ShouldBe(lines.Order(StringComparer.Ordinal).ToList(), $"row {row}");
    }

    [Fact]
    public async Task filters_apply_to_groups_and_a_category_the_pool_lacks_is_9003()
    {
        var f = await FamilyAsync();
        (await f.T.LedgerOkAsync(Group("groupId", f.GroupId, "&alternateCurrencyNames=Stars"))).Total().ShouldBe(3);
        (await f.T.LedgerOkAsync(Group("groupId", f.GroupId, "&ledgerEntryType=DEBIT"))).Lines().ShouldBe([Redeemed]);
        (await f.T.LedgerOkAsync(Group("groupId", f.GroupId, "&tillId=till-1"))).Total().ShouldBe(3);
        (await f.T.LedgerOkAsync(Group("groupId", f.GroupId, $"&programId={f.ProgramId}"))).Total().ShouldBe(4);
        await f.T.LedgerFailsAsync(Group("groupId", f.GroupId, "&pointCategoryType=TRIGGER_BASED"), 404, 9003);
    }

    [Fact]
    public async Task a_dated_group_query_gives_the_pools_closing_balances()
    {
        var f = await FamilyAsync();
        var body = await f.T.LedgerOkAsync(Group("groupId", f.GroupId, "&includeAlternateCurrencies=true&startDate=2024-03-01T00:00:00&endDate=2024-03-03T23:59:59"));
        body.Total().ShouldBe(2);
        var closing = body.GetProperty("ledgerClosingBalance").EnumerateArray()
            .Select(c => (c.TryGetProperty("alternateCurrencyName", out var n) ? n.GetString() : "points") + "=" + c.GetProperty("closingBalance").GetString()).ToList();
        closing.ShouldBe(["points=20.000", "Stars=100.000"]);
    }

    [Fact]
    public async Task a_members_own_ledger_does_not_show_the_pools_events()
    {
        var f = await FamilyAsync();
        (await f.T.LedgerOkAsync(LedgerApi.Customer(f.Secondary))).EventNames().ShouldBe(["CustomerRegistration"]);
    }

    [Fact]
    public async Task an_unknown_group_is_11012_and_a_customer_identifier_type_is_8013()
    {
        var f = await FamilyAsync();
        await f.T.LedgerFailsAsync(Group("groupId", 987654321), 404, 11012);
        await f.T.LedgerFailsAsync(Group("externalId", "nope"), 404, 11012);
        await f.T.LedgerFailsAsync(Group("mobile", "1"), 400, 8013);
        await f.T.LedgerFailsAsync(Group("groupId", f.GroupId, "&limit=101"), 400, 11029);
    }

    [Fact]
    public async Task role_on_a_customer_query_is_ignored_with_a_warning()
    {
        var f = await FamilyAsync();
        var body = await f.T.LedgerOkAsync(LedgerApi.Customer(f.Primary, "&role=PRIMARY"));
        body.Total().ShouldBe(1);
        body.Warnings().ShouldHaveSingleItem().ShouldContain("role");
    }
}

public sealed class GroupLedgerTestsOnSqlite(SqliteDatabase db) : GroupLedgerTests(db), IClassFixture<SqliteDatabase>;

public sealed class GroupLedgerTestsOnPostgres(PostgresDatabase db) : GroupLedgerTests(db), IClassFixture<PostgresDatabase>;
