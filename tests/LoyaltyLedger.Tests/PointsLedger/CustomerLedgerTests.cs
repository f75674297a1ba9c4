using LoyaltyLedger.Organizations;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.PointsLedger;

/// <summary>Every query parameter of a customer's points ledger, one test each.</summary>
public abstract class CustomerLedgerTests(DatabaseFixture db)
{
    private static readonly DateTimeOffset Day0 = new(2024, 1, 10, 8, 0, 0, TimeSpan.Zero);

    /// <summary>A customer with a registration and an award of 1..n points on each of n days from Day0.</summary>
    private async Task<(Tenant T, long Customer, long ProgramId)> CustomerWithDailyAwardsAsync(int days, string? email = null)
    {
        var t = await db.Host.NewTenantAsync();
        db.Host.Clock.Set(Day0.AddDays(-1));
        var (programId, _) = await t.NewProgramAsync("Main program", currencies: "Stars");
        var customer = await t.NewCustomerAsync(email);
        for (var i = 0; i < days; i++)
        {
            db.Host.Clock.Set(Day0.AddDays(i));
            await t.AwardAsync(customer, (i + 1).ToString(System.Globalization.CultureInfo.InvariantCulture), programId: programId);
        }
        return (t, customer, programId);
    }

    [Theory]
    [InlineData("id")]
    [InlineData("email")]
    [InlineData("mobile")]
    [InlineData("externalId")]
    public async Task identifier_name_finds_the_customer_by_each_identifier_type(string identifierName)
    {
        var t = await db.Host.NewTenantAsync();
        await t.NewProgramAsync("Main program");
        var customer = await t.PostOkAsync("/v1/customers", new { firstName = "Ada", lastName = "L", email = "ada@example.com", mobile = "4470000001", externalId = "ext-ada" });
        var id = customer.GetProperty("customerId").GetInt64();
        var value = identifierName switch { "id" => id.ToString(System.Globalization.CultureInfo.InvariantCulture), "email" => "ada@example.com", "mobile" => "4470000001", _ => "ext-ada" };

        var body = await t.LedgerOkAsync($"identifierName={identifierName}&identifierValue={value}&source=INSTORE");

        var details = body.GetProperty("customerDetails");
        details.GetProperty("userId").GetInt64().ShouldBe(id);
        details.GetProperty("firstName").GetString().ShouldBe("Ada");
        details.GetProperty("lastName").GetString().ShouldBe("L");
        details.GetProperty("externalId").GetString().ShouldBe("ext-ada");
        details.GetProperty("entityType").GetString().ShouldBe("CUSTOMER");
        body.EventNames().ShouldBe(["CustomerRegistration"]);
    }

    [Fact]
    public async Task source_must_be_the_one_the_identifier_is_registered_in_or_all()
    {
        var (t, _, _) = await CustomerWithDailyAwardsAsync(1, "src@example.com");
        (await t.LedgerOkAsync("identifierName=email&identifierValue=src@example.com&source=INSTORE")).Total().ShouldBe(2);
        (await t.LedgerOkAsync("identifierName=email&identifierValue=src@example.com&source=ALL")).Total().ShouldBe(2);
        await t.LedgerFailsAsync("identifierName=email&identifierValue=src@example.com&source=WECHAT", 404, 11012);
    }

    [Theory]
    [InlineData("acountId")]
    [InlineData("accountId")]
    public async Task account_id_picks_the_customer_of_that_account_in_a_source_with_several_accounts(string parameter)
    {
        var t = await db.Host.NewTenantAsync();
        await t.NewProgramAsync("Main program");
        var first = await t.PostOkAsync("/v1/customers", new { firstName = "First", source = "WECHAT", accountId = "acc-1", email = "shared@example.com" });
        var second = await t.PostOkAsync("/v1/customers", new { firstName = "Second", source = "WECHAT", accountId = "acc-2", email = "shared@example.com" });

        var one = await t.LedgerOkAsync($"identifierName=email&identifierValue=shared@example.com&source=WECHAT&{parameter}=acc-1");
        var two = await t.LedgerOkAsync($"identifierName=email&identifierValue=shared@example.com&source=WECHAT&{parameter}=acc-2");

        one.GetProperty("customerDetails").GetProperty("userId").GetInt64().ShouldBe(first.GetProperty("customerId").GetInt64());
        two.GetProperty("customerDetails").GetProperty("userId").GetInt64().ShouldBe(second.GetProperty("customerId").GetInt64());
        await t.LedgerFailsAsync($"identifierName=email&identifierValue=shared@example.com&source=WECHAT&{parameter}=acc-3", 404, 11012);
    }

    [Fact]
    public async Task till_id_keeps_the_events_of_that_till_by_code_or_by_id()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(tillCode: "till-a");
        var tillB = await t.PostOkAsync("/v1/tills", new { code = "till-b", storeCode = shop.StoreCode });
        var customer = await t.NewCustomerAsync();
        await t.BillAsync(shop, customer, "B-1", 100m);
        await t.PostOkAsync("/v1/transactions", new { customerId = customer, billNumber = "B-2", amount = 50m, storeCode = shop.StoreCode, tillCode = "till-b" });

        var byCode = await t.LedgerOkAsync(LedgerApi.Customer(customer, "&tillId=till-b"));
        byCode.Events().ShouldHaveSingleItem().GetProperty("transactionDetails").GetProperty("transactionNumber").GetString().ShouldBe("B-2");
        var byId = await t.LedgerOkAsync(LedgerApi.Customer(customer, "&tillId=" + tillB.GetProperty("tillId").GetInt64()));
        byId.EventIds().ShouldBe(byCode.EventIds());
        await t.LedgerFailsAsync(LedgerApi.Customer(customer, "&tillId=no-such-till"), 404, 11003);
    }

    [Fact]
    public async Task delayed_accrual_entries_carry_the_bills_store_and_till_so_till_id_finds_them_with_their_bill()
    {
        var t = await db.Host.NewTenantAsync();
        db.Host.Clock.Set(new DateTimeOffset(2024, 6, 1, 9, 0, 0, TimeSpan.Zero));
        var programId = (await t.PostOkAsync("/v1/programs", new { name = "Held program", earnRate = "1", promisedDays = 14 })).GetProperty("programId").GetInt64();
        await t.PostOkAsync("/v1/stores", new { code = "store-1", name = "Store One" });
        await t.PostOkAsync("/v1/tills", new { code = "till-1", storeCode = "store-1" });
        await t.PostOkAsync("/v1/tills", new { code = "till-2", storeCode = "store-1" });
        var customer = await t.NewCustomerAsync();
        await t.PostOkAsync("/v1/transactions", new { customerId = customer, billNumber = "PROMISED-1", amount = 30m, storeCode = "store-1", tillCode = "till-1", programId });
        await t.PostOkAsync("/v1/transactions", new { customerId = customer, billNumber = "ELSEWHERE", amount = 20m, storeCode = "store-1", tillCode = "till-2", programId });
        await t.PostOkAsync("/v1/transactions", new { customerId = customer, billNumber = "TRIGGER-1", amount = 40m, storeCode = "store-1", tillCode = "till-1", programId, holdForTrigger = true });
        db.Host.Clock.Advance(TimeSpan.FromDays(15));
        await t.PostOkAsync("/v1/lifecycle/expire", new { });
        await t.PostOkAsync("/v1/lifecycle/triggers/release", new { storeCode = "store-1", billNumber = "TRIGGER-1" });

        var atTill = await t.LedgerOkAsync(LedgerApi.Customer(customer, "&tillId=till-1&sortOrder=ASC"));

        atTill.Events().Select(e => e.GetProperty("eventName").GetString() + " " + e.GetProperty("transactionDetails").GetProperty("transactionNumber").GetString())
            .ShouldBe(["TransactionAdd PROMISED-1", "TransactionAdd TRIGGER-1", "DelayedAccrual PROMISED-1", "DelayedAccrual TRIGGER-1"]);
        foreach (var accrual in atTill.Events().Where(e => e.GetProperty("eventName").GetString() == "DelayedAccrual"))
        {
            accrual.GetProperty("store").GetString().ShouldBe("Store One");
            accrual.GetProperty("storeCode").GetString().ShouldBe("store-1");
            accrual.GetProperty("tillCode").GetString().ShouldBe("till-1");
        }
        (await t.LedgerOkAsync(LedgerApi.Customer(customer, "&tillId=till-2&sortOrder=ASC"))).Events()
            .Select(e => e.GetProperty("eventName").GetString() + " " + e.GetProperty("transactionDetails").GetProperty("transactionNumber").GetString())
            .ShouldBe(["TransactionAdd ELSEWHERE", "DelayedAccrual ELSEWHERE"]);
    }

    [Fact]
    public async Task program_id_keeps_the_lines_of_that_program()
    {
        var t = await db.Host.NewTenantAsync();
        var (first, _) = await t.NewProgramAsync("First");
        var (second, _) = await t.NewProgramAsync("Second");
        var customer = await t.NewCustomerAsync();
        await t.AwardAsync(customer, "11", programId: first);
        await t.AwardAsync(customer, "22", programId: second);

        var body = await t.LedgerOkAsync(LedgerApi.Customer(customer, $"&programId={second}"));

        body.Lines().ShouldBe(["points/Main/CREDIT/22.000", "points/Main/OPENING_BALANCE/0.000"]);
        body.Events().SelectMany(e => e.GetProperty("entryDetails").EnumerateArray()).ShouldAllBe(d => d.GetProperty("programId").GetInt64() == second);
    }

    [Fact]
    public async Task include_till_concept_events_adds_debits_of_other_programs_at_the_tills_of_the_programs_concept()
    {
        var t = await db.Host.NewTenantAsync();
        var (grocery, _) = await t.NewProgramAsync("Grocery", concept: "grocery");
        var (fuel, _) = await t.NewProgramAsync("Fuel", concept: "fuel");
        await t.PostOkAsync("/v1/stores", new { code = "g-store", concept = "grocery" });
        await t.PostOkAsync("/v1/tills", new { code = "g-till", storeCode = "g-store" });
        await t.PostOkAsync("/v1/stores", new { code = "f-store", concept = "fuel" });
        await t.PostOkAsync("/v1/tills", new { code = "f-till", storeCode = "f-store" });
        var customer = await t.NewCustomerAsync();
        await t.AwardAsync(customer, "100", programId: fuel);
        await t.PostOkAsync("/v1/redemptions", new { customerId = customer, points = "30", programId = fuel, storeCode = "g-store", tillCode = "g-till" });
        await t.PostOkAsync("/v1/redemptions", new { customerId = customer, points = "20", programId = fuel, storeCode = "f-store", tillCode = "f-till" });

        var without = await t.LedgerOkAsync(LedgerApi.Customer(customer, $"&programId={grocery}"));
        var with = await t.LedgerOkAsync(LedgerApi.Customer(customer, $"&programId={grocery}&includeTillConceptEvents=true"));

        without.Lines().ShouldBe(["points/Main/OPENING_BALANCE/0.000"]);
        with.Lines().ShouldBe(["points/Main/DEBIT/30.000", "points/Main/OPENING_BALANCE/0.000"]);
        with.Events()[0].GetProperty("tillCode").GetString().ShouldBe("g-till");
    }

    [Theory]
    [InlineData("CREDIT", "points/Main/CREDIT/100.000")]
    [InlineData("DEBIT", "points/Main/DEBIT/40.000")]
    [InlineData("OPENING_BALANCE", "points/Main/OPENING_BALANCE/0.000")]
    [InlineData("debit", "points/Main/DEBIT/40.000")]
    public async Task ledger_entry_type_keeps_the_lines_of_that_type(string type, string line)
    {
        var t = await db.Host.NewTenantAsync();
        var (programId, _) = await t.NewProgramAsync("Main program");
        var customer = await t.NewCustomerAsync();
        await t.AwardAsync(customer, "100", programId: programId);
        await t.PostOkAsync("/v1/redemptions", new { customerId = customer, points = "40", programId });

        (await t.LedgerOkAsync(LedgerApi.Customer(customer, "&ledgerEntryType=" + type))).Lines().ShouldBe([line]);
    }

    [Fact]
    public async Task without_dates_the_whole_history_is_read_and_no_closing_balance_is_given()
    {
        var (t, customer, _) = await CustomerWithDailyAwardsAsync(200);
        var body = await t.LedgerOkAsync(LedgerApi.Customer(customer));
        body.Total().ShouldBe(201);
        body.TryGetProperty("ledgerClosingBalance", out _).ShouldBeFalse();
    }

    [Fact]
    public async Task start_and_end_date_bound_the_events_inclusively()
    {
        var (t, customer, _) = await CustomerWithDailyAwardsAsync(30);
        var body = await t.LedgerOkAsync(LedgerApi.Customer(customer, "&startDate=2024-01-12T08:00:00&endDate=2024-01-14T08:00:00"));
        body.Lines().ShouldBe(["points/Main/CREDIT/3.000", "points/Main/CREDIT/4.000", "points/Main/CREDIT/5.000"]);
    }

    [Fact]
    public async Task only_a_start_date_reads_ninety_days_forward_from_it()
    {
        var (t, customer, _) = await CustomerWithDailyAwardsAsync(200);
        var body = await t.LedgerOkAsync(LedgerApi.Customer(customer, "&startDate=2024-01-10T08:00:00"));
        body.Total().ShouldBe(91); // day 0 to day 90 inclusive
        body.Events()[0].GetProperty("ledgerCreatedDate").GetString().ShouldBe("2024-04-09 08:00:00.0");
    }

    [Fact]
    public async Task only_an_end_date_reads_ninety_days_back_from_it()
    {
        var (t, customer, _) = await CustomerWithDailyAwardsAsync(200);
        var body = await t.LedgerOkAsync(LedgerApi.Customer(customer, "&endDate=2024-07-27T08:00:00&sortOrder=ASC"));
        body.Total().ShouldBe(91);
        body.Events()[0].GetProperty("ledgerCreatedDate").GetString().ShouldBe("2024-04-28 08:00:00.0");
    }

    [Fact]
    public async Task include_last_one_year_data_reads_a_year_from_a_single_date()
    {
        var (t, customer, _) = await CustomerWithDailyAwardsAsync(400);
        (await t.LedgerOkAsync(LedgerApi.Customer(customer, "&startDate=2024-01-10T08:00:00&includeLastOneYearData=true"))).Total().ShouldBe(367);
        (await t.LedgerOkAsync(LedgerApi.Customer(customer, "&endDate=2025-01-10T08:00:00&includeLastOneYearData=true"))).Total().ShouldBe(367);
        (await t.LedgerOkAsync(LedgerApi.Customer(customer, "&startDate=2024-01-10T08:00:00&includeLastOneYearData=false"))).Total().ShouldBe(91);
    }

    [Fact]
    public async Task a_single_date_near_either_end_of_the_calendar_reads_a_window_clamped_to_it()
    {
        var before = db.Host.Clock.GetUtcNow();
        try
        {
            var t = await db.Host.NewTenantAsync();
            var (programId, _) = await t.NewProgramAsync("Main program");
            var customer = await t.NewCustomerAsync();
            db.Host.Clock.Set(new DateTimeOffset(1, 1, 20, 8, 0, 0, TimeSpan.Zero));
            await t.AwardAsync(customer, "1", programId: programId);
            db.Host.Clock.Set(new DateTimeOffset(9999, 12, 1, 8, 0, 0, TimeSpan.Zero));
            await t.AwardAsync(customer, "2", programId: programId);

            // 90 days (or a year) back from early in year 1 reaches 0001-01-01, forward from late in 9999 its last instant.
            (await t.LedgerOkAsync(LedgerApi.Customer(customer, "&endDate=0001-03-01T00:00:00"))).Lines().ShouldBe(["points/Main/CREDIT/1.000"]);
            (await t.LedgerOkAsync(LedgerApi.Customer(customer, "&endDate=0001-03-01T00:00:00&includeLastOneYearData=true"))).Lines().ShouldBe(["points/Main/CREDIT/1.000"]);
            var late = await t.LedgerOkAsync(LedgerApi.Customer(customer, "&startDate=9999-10-15T00:00:00"));
            late.Lines().ShouldBe(["points/Main/CREDIT/2.000"]);
            late.GetProperty("ledgerClosingBalance")[0].GetProperty("date").GetString().ShouldBe("9999-12-31 23:59:59.999");
            (await t.LedgerOkAsync(LedgerApi.Customer(customer, "&startDate=9999-10-15T00:00:00&includeLastOneYearData=true"))).Lines().ShouldBe(["points/Main/CREDIT/2.000"]);
        }
        finally
        {
            db.Host.Clock.Set(before);
        }
    }

    [Fact]
    public async Task is_filter_based_on_date_false_reads_the_whole_history_despite_dates()
    {
        var (t, customer, _) = await CustomerWithDailyAwardsAsync(100);
        var body = await t.LedgerOkAsync(LedgerApi.Customer(customer, "&startDate=2024-01-12T08:00:00&endDate=2024-01-14T08:00:00&isFilterBasedOnDate=false"));
        body.Total().ShouldBe(101);
        body.TryGetProperty("ledgerClosingBalance", out _).ShouldBeFalse();
    }

    [Fact]
    public async Task a_dated_query_gives_the_closing_balance_per_program_currency_and_category_at_its_end()
    {
        var (t, customer, programId) = await CustomerWithDailyAwardsAsync(10);
        var body = await t.LedgerOkAsync(LedgerApi.Customer(customer, "&includeAlternateCurrencies=true&startDate=2024-01-10T00:00:00&endDate=2024-01-12T23:00:00"));

        var closing = body.GetProperty("ledgerClosingBalance").EnumerateArray().ToList();
        closing.Count.ShouldBe(2);
        closing[0].GetProperty("programId").GetInt64().ShouldBe(programId);
        closing[0].GetProperty("programName").GetString().ShouldBe("Main program");
        closing[0].GetProperty("pointsCategory").GetString().ShouldBe("Main");
        closing[0].TryGetProperty("alternateCurrencyName", out _).ShouldBeFalse();
        closing[0].GetProperty("closingBalance").GetString().ShouldBe("6.000"); // 1 + 2 + 3
        closing[0].GetProperty("date").GetString().ShouldBe("2024-01-12 23:00:00.0");
        closing[1].GetProperty("alternateCurrencyName").GetString().ShouldBe("Stars");
        closing[1].GetProperty("closingBalance").GetString().ShouldBe("0.000");
    }

    [Fact]
    public async Task limit_sets_the_page_size_and_the_page_count()
    {
        var (t, customer, _) = await CustomerWithDailyAwardsAsync(24);
        var body = await t.LedgerOkAsync($"identifierName=id&identifierValue={customer}&source=INSTORE&limit=10");
        body.Events().Count.ShouldBe(10);
        var page = body.GetProperty("ledgerDetails");
        page.GetProperty("pageNumber").GetInt32().ShouldBe(0);
        page.GetProperty("pageSize").GetInt32().ShouldBe(10);
        page.GetProperty("totalEntries").GetInt64().ShouldBe(25);
        page.GetProperty("pageCount").GetInt64().ShouldBe(3);
        (await t.LedgerOkAsync($"identifierName=id&identifierValue={customer}&source=INSTORE")).Events().Count.ShouldBe(10);
    }

    [Theory]
    [InlineData("sortOrder=DESC")]
    [InlineData("sortOrder=ASC")]
    [InlineData("sort=DESC")]
    [InlineData("sort=asc")]
    public async Task offset_is_a_page_number_and_every_page_is_the_matching_slice_of_the_whole_order(string sort)
    {
        var (t, customer, _) = await CustomerWithDailyAwardsAsync(46);
        var all = (await t.LedgerOkAsync(LedgerApi.Customer(customer, "&" + sort))).EventIds();
        all.Count.ShouldBe(47);

        for (var page = 0; page < 5; page++)
        {
            var body = await t.LedgerOkAsync($"identifierName=id&identifierValue={customer}&source=INSTORE&limit=10&offset={page}&{sort}");
            body.GetProperty("ledgerDetails").GetProperty("pageNumber").GetInt32().ShouldBe(page);
            body.EventIds().ShouldBe(all.Skip(page * 10).Take(10).ToList());
        }
    }

    [Fact]
    public async Task sort_order_defaults_to_newest_first_and_asc_gives_oldest_first()
    {
        var (t, customer, _) = await CustomerWithDailyAwardsAsync(3);
        var desc = await t.LedgerOkAsync(LedgerApi.Customer(customer));
        var asc = await t.LedgerOkAsync(LedgerApi.Customer(customer, "&sortOrder=ASC"));
        desc.EventNames()[^1].ShouldBe("CustomerRegistration");
        asc.EventNames()[0].ShouldBe("CustomerRegistration");
        asc.EventIds().ShouldBe(desc.EventIds().Reverse().ToList());
    }

    [Fact]
    public async Task entries_print_points_with_three_decimals_dates_with_the_fraction_and_net_points_of_the_event()
    {
        var t = await db.Host.NewTenantAsync();
        db.Host.Clock.Set(new DateTimeOffset(2024, 5, 4, 7, 0, 0, TimeSpan.Zero));
        var shop = await t.NewShopAsync(earnRate: "0.125");
        var customer = await t.NewCustomerAsync();
        db.Host.Clock.Set(new DateTimeOffset(2024, 5, 4, 7, 16, 34, 500, TimeSpan.Zero));
        await t.PostOkAsync("/v1/transactions", new
        {
            customerId = customer, billNumber = "F-1", amount = 35.5m, grossAmount = 40m, storeCode = shop.StoreCode, tillCode = shop.TillCode,
            billDate = "2024-05-04T07:16:00Z",
        });
        await t.PostOkAsync("/v1/redemptions", new { customerId = customer, points = "1.5", programId = shop.ProgramId });

        var events = (await t.LedgerOkAsync(LedgerApi.Customer(customer))).Events();

        var bill = events[1];
        bill.GetProperty("eventName").GetString().ShouldBe("TransactionAdd");
        bill.GetProperty("ledgerCreatedDate").GetString().ShouldBe("2024-05-04 07:16:34.5");
        bill.GetProperty("entryDetails")[0].GetProperty("points").GetString().ShouldBe("4.437");
        bill.GetProperty("netPointsOnEvent").GetString().ShouldBe("4.437");
        var transaction = bill.GetProperty("transactionDetails");
        transaction.GetProperty("transactionNumber").GetString().ShouldBe("F-1");
        transaction.GetProperty("date").GetString().ShouldBe("2024-05-04 07:16:00.0");
        transaction.GetProperty("amount").GetRawText().ShouldBe("35.5");
        transaction.GetProperty("grossBillAmount").GetRawText().ShouldBe("40.0");
        transaction.GetProperty("source").GetString().ShouldBe("instore");
        bill.GetProperty("storeCode").GetString().ShouldBe(shop.StoreCode);
        bill.GetProperty("tillCode").GetString().ShouldBe(shop.TillCode);
        bill.GetProperty("customerDetails").GetRawText().ShouldBe("""{"userId":0}""");

        var redemption = events[0];
        redemption.GetProperty("netPointsOnEvent").GetString().ShouldBe("-1.500");
        redemption.GetProperty("customerDetails").ValueKind.ShouldBe(System.Text.Json.JsonValueKind.Null);
        redemption.GetProperty("transactionDetails").GetRawText().ShouldBe("{}");
        redemption.GetProperty("tillCode").GetString().ShouldBe("default");
    }

    [Fact]
    public async Task a_read_key_may_read_the_ledger_and_no_credentials_are_refused()
    {
        var t = await db.Host.NewTenantAsync();
        await t.NewProgramAsync("Main program");
        var customer = await t.NewCustomerAsync();
        var key = await Tenants.IssueKeyAsync(db.Database, t.OrgId, KeyRole.Read, db.Host.Clock, CancellationToken.None);
        var reader = t with { Http = db.Host.Client(key.KeyId, key.Secret) };

        (await reader.LedgerOkAsync(LedgerApi.Customer(customer))).Total().ShouldBe(1);
        using var anonymous = await db.Host.Client().GetAsync(LedgerApi.Path + "?" + LedgerApi.Customer(customer));
        ((int)anonymous.StatusCode).ShouldBe(401);
    }

    [Fact]
    public async Task another_organizations_customer_is_not_found()
    {
        var (_, customer, _) = await CustomerWithDailyAwardsAsync(1);
        var other = await db.Host.NewTenantAsync();
        await other.LedgerFailsAsync(LedgerApi.Customer(customer), 404, 11012);
    }
}

public sealed class CustomerLedgerTestsOnSqlite(SqliteDatabase db) : CustomerLedgerTests(db), IClassFixture<SqliteDatabase>;

public sealed class CustomerLedgerTestsOnPostgres(PostgresDatabase db) : CustomerLedgerTests(db), IClassFixture<PostgresDatabase>;
