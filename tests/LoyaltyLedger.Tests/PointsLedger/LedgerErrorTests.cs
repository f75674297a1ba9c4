using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.PointsLedger;

/// <summary>Every error code of the points-ledger read, in the spec's error body, with its HTTP status.</summary>
public abstract class LedgerErrorTests(DatabaseFixture db)
{
    private async Task<(Tenant T, long Customer)> CustomerAsync()
    {
        var t = await db.Host.NewTenantAsync();
        await t.NewProgramAsync("Main program", currencies: "Stars");
        var customer = await t.NewCustomerAsync();
        return (t, customer);
    }

    [Theory]
    [InlineData("identifierValue=1&source=INSTORE", "identifierName")]
    [InlineData("identifierName=id&source=INSTORE", "identifierValue")]
    [InlineData("identifierName=id&identifierValue=1", "source")]
    [InlineData("identifierName=id&identifierValue=&source=INSTORE", "identifierValue")]
    [InlineData("type=USERGROUP2&identifierValue=1&source=INSTORE", "identifierName")]
    public async Task a_missing_mandatory_parameter_is_11001_naming_it(string query, string parameter)
    {
        var (t, _) = await CustomerAsync();
        (await t.LedgerFailsAsync(query, 400, 11001)).ShouldBe($"Mandatory parameter {parameter} is missing");
    }

    [Fact]
    public async Task an_unknown_customer_id_is_11012()
    {
        var (t, _) = await CustomerAsync();
        (await t.LedgerFailsAsync(LedgerApi.Customer(999999), 404, 11012)).ShouldBe("Invalid userId passed in request");
        await t.LedgerFailsAsync("identifierName=email&identifierValue=nobody@example.com&source=INSTORE", 404, 11012);
    }

    [Theory]
    [InlineData("MARTJACK")]
    [InlineData("ALL")]
    public async Task an_identifier_of_customers_under_two_accounts_without_acount_id_is_11009_not_one_of_their_ledgers(string source)
    {
        var t = await db.Host.NewTenantAsync();
        await t.NewProgramAsync("Main program");
        var first = (await t.PostOkAsync("/v1/customers", new { firstName = "First", source = "MARTJACK", accountId = "shop-a", email = "twice@example.com" }))
            .GetProperty("customerId").GetInt64();
        await t.PostOkAsync("/v1/customers", new { firstName = "Second", source = "MARTJACK", accountId = "shop-b", email = "twice@example.com" });

        var message = await t.LedgerFailsAsync($"identifierName=email&identifierValue=twice@example.com&source={source}", 400, 11009);

        message.ShouldContain("acountId");
        message.ShouldNotContain(first.ToString(System.Globalization.CultureInfo.InvariantCulture));
        (await t.LedgerOkAsync($"identifierName=email&identifierValue=twice@example.com&source={source}&acountId=shop-a"))
            .GetProperty("customerDetails").GetProperty("userId").GetInt64().ShouldBe(first);
    }

    [Fact]
    public async Task an_identifier_of_customers_in_two_sources_read_with_source_all_is_11009()
    {
        var t = await db.Host.NewTenantAsync();
        await t.NewProgramAsync("Main program");
        var inStore = (await t.PostOkAsync("/v1/customers", new { firstName = "Shop", source = "INSTORE", email = "both@example.com" }))
            .GetProperty("customerId").GetInt64();
        await t.PostOkAsync("/v1/customers", new { firstName = "Chat", source = "WECHAT", email = "both@example.com" });

        (await t.LedgerFailsAsync("identifierName=email&identifierValue=both@example.com&source=ALL", 400, 11009)).ShouldContain("source");
        (await t.LedgerOkAsync("identifierName=email&identifierValue=both@example.com&source=INSTORE"))
            .GetProperty("customerDetails").GetProperty("userId").GetInt64().ShouldBe(inStore);
    }

    [Fact]
    public async Task one_customer_under_two_accounts_of_a_source_is_read_without_acount_id()
    {
        var t = await db.Host.NewTenantAsync();
        await t.NewProgramAsync("Main program");
        var customer = (await t.PostOkAsync("/v1/customers", new { firstName = "Both", source = "MARTJACK", accountId = "shop-a", email = "mine@example.com" }))
            .GetProperty("customerId").GetInt64();
        await t.PostOkAsync($"/v1/customers/{customer}/identifiers", new { source = "MARTJACK", type = "email", value = "mine@example.com", accountId = "shop-b" });

        (await t.LedgerOkAsync("identifierName=email&identifierValue=mine@example.com&source=MARTJACK"))
            .GetProperty("customerDetails").GetProperty("userId").GetInt64().ShouldBe(customer);
    }

    [Fact]
    public async Task a_non_numeric_customer_id_is_11012()
    {
        var (t, _) = await CustomerAsync();
        await t.LedgerFailsAsync("identifierName=id&identifierValue=abc&source=INSTORE", 400, 11012);
    }

    [Theory]
    [InlineData("identifierName=card&identifierValue=1&source=INSTORE")]
    [InlineData("identifierName=id&identifierValue=1&source=NOWHERE")]
    [InlineData("type=USERGROUP2&identifierName=email&identifierValue=1&source=INSTORE")]
    public async Task an_unknown_identifier_type_or_source_is_8013(string query)
    {
        var (t, _) = await CustomerAsync();
        (await t.LedgerFailsAsync(query, 400, 8013)).ShouldStartWith("Lookup, Invalid identifier passed");
    }

    [Theory]
    [InlineData("101")]
    [InlineData("1000")]
    public async Task a_limit_over_100_is_11029(string limit)
    {
        var (t, customer) = await CustomerAsync();
        (await t.LedgerFailsAsync($"identifierName=id&identifierValue={customer}&source=INSTORE&limit={limit}", 400, 11029))
            .ShouldBe("Limit cannot be greater than 100");
        (await t.LedgerOkAsync($"identifierName=id&identifierValue={customer}&source=INSTORE&limit=100")).Total().ShouldBe(1);
    }

    [Fact]
    public async Task no_entries_for_the_parameters_is_11003()
    {
        var (t, customer) = await CustomerAsync();
        (await t.LedgerFailsAsync(LedgerApi.Customer(customer, "&ledgerEntryType=DEBIT"), 404, 11003))
            .ShouldBe("There are no ledger entries present for the given parameters. Try removing parameters to widen the search");
        await t.LedgerFailsAsync(LedgerApi.Customer(customer, "&startDate=2020-01-01T00:00:00&endDate=2020-02-01T00:00:00"), 404, 11003);
    }

    [Fact]
    public async Task an_offset_past_the_last_page_is_11003()
    {
        var (t, customer) = await CustomerAsync();
        for (var i = 0; i < 4; i++) await t.AwardAsync(customer, "1");
        (await t.LedgerOkAsync($"identifierName=id&identifierValue={customer}&source=INSTORE&limit=2&offset=2")).Events().Count.ShouldBe(1);
        await t.LedgerFailsAsync($"identifierName=id&identifierValue={customer}&source=INSTORE&limit=2&offset=3", 404, 11003);
    }

    [Theory]
    [InlineData("REFUND")]
    [InlineData("OPENING")]
    public async Task an_unknown_ledger_entry_type_is_11007(string type)
    {
        var (t, customer) = await CustomerAsync();
        (await t.LedgerFailsAsync(LedgerApi.Customer(customer, "&ledgerEntryType=" + type), 400, 11007)).ShouldBe("Invalid ledgerEntryType passed in request");
    }

    [Theory]
    [InlineData("BONUS")]
    [InlineData("Main")]
    public async Task an_unknown_point_category_type_is_11008(string category)
    {
        var (t, customer) = await CustomerAsync();
        (await t.LedgerFailsAsync(LedgerApi.Customer(customer, "&pointCategoryType=" + category), 400, 11008)).ShouldBe("Invalid pointCategoryType passed in request");
    }

    [Fact]
    public async Task a_category_or_currency_the_customer_holds_no_wallet_of_is_9003()
    {
        var (t, customer) = await CustomerAsync();
        (await t.LedgerFailsAsync(LedgerApi.Customer(customer, "&pointCategoryType=PROMISED"), 404, 9003)).ShouldBe("No CPS entry for the given points type.");
        await t.PostOkAsync($"/v1/programs/{(await t.GetOkAsync("/v1/programs"))[0].GetProperty("programId").GetInt64()}/currencies", new { name = "Coins" });
        await t.LedgerFailsAsync(LedgerApi.Customer(customer, "&alternateCurrencyNames=Coins"), 404, 9003);
    }

    [Theory]
    [InlineData("Pebbles")]
    [InlineData("Stars,Pebbles")]
    [InlineData(",")]
    public async Task an_unknown_alternate_currency_name_is_9005(string names)
    {
        var (t, customer) = await CustomerAsync();
        (await t.LedgerFailsAsync(LedgerApi.Customer(customer, "&alternateCurrencyNames=" + names), 400, 9005))
            .ShouldStartWith("Invalid alternateCurrencyNames passed in request");
    }

    [Fact]
    public async Task the_customer_is_checked_before_the_currency_names_so_an_unknown_customer_with_an_unknown_name_is_11012()
    {
        // A customer's page is read with the customer looked up in the page's own statement; the
        // filter built before it must not answer first for a request that names nobody.
        var (t, customer) = await CustomerAsync();
        await t.LedgerFailsAsync(LedgerApi.Customer(999999, "&alternateCurrencyNames=Pebbles"), 404, 11012);
        await t.LedgerFailsAsync("identifierName=email&identifierValue=nobody@example.com&source=INSTORE&alternateCurrencyNames=Pebbles", 404, 11012);
        await t.LedgerFailsAsync(LedgerApi.Customer(customer, "&alternateCurrencyNames=Pebbles"), 400, 9005);
    }

    [Theory]
    [InlineData("&includeTillConceptEvents=true")]
    [InlineData("&acountId=a&accountId=b")]
    [InlineData("&sortOrder=ASC&sort=DESC")]
    [InlineData("&startDate=2024-02-01T00:00:00&endDate=2024-01-01T00:00:00")]
    public async Task an_invalid_combination_is_11005(string parameters)
    {
        var (t, customer) = await CustomerAsync();
        (await t.LedgerFailsAsync(LedgerApi.Customer(customer, parameters), 400, 11005)).ShouldStartWith("Invalid input combination");
    }

    [Theory]
    [InlineData("&startDate=2024-01-01T00:00:00&endDate=2024-03-31T00:00:01")]
    [InlineData("&startDate=2024-01-01T00:00:00&endDate=2024-12-31T00:00:00&includeLastOneYearData=true")]
    public async Task a_date_window_over_90_days_is_11006(string parameters)
    {
        var (t, customer) = await CustomerAsync();
        (await t.LedgerFailsAsync(LedgerApi.Customer(customer, parameters), 400, 11006))
            .ShouldBe("The maximum difference between startDate and endDate should not be more than 90 days");
    }

    [Fact]
    public async Task a_window_of_exactly_90_days_is_accepted()
    {
        var (t, customer) = await CustomerAsync();
        await t.LedgerFailsAsync(LedgerApi.Customer(customer, "&startDate=2024-01-01T00:00:00&endDate=2024-03-31T00:00:00"), 404, 11003);
    }

    [Theory]
    [InlineData("&startDate=01/02/2024")]
    [InlineData("&endDate=2024-13-01T00:00:00")]
    [InlineData("&limit=ten")]
    [InlineData("&limit=0")]
    [InlineData("&offset=-1")]
    [InlineData("&offset=x")]
    [InlineData("&sortOrder=UP")]
    [InlineData("&sort=newest")]
    [InlineData("&includeAlternateCurrencies=yes")]
    [InlineData("&excludePointCategories=1")]
    [InlineData("&isFilterBasedOnDate=no")]
    [InlineData("&includeLastOneYearData=maybe")]
    [InlineData("&includeTillConceptEvents=on")]
    [InlineData("&programId=main")]
    [InlineData("&type=FAMILY")]
    public async Task a_malformed_value_is_11004_naming_the_parameter(string parameter)
    {
        var (t, customer) = await CustomerAsync();
        var name = parameter[1..parameter.IndexOf('=', StringComparison.Ordinal)];
        var message = await t.LedgerFailsAsync(LedgerApi.Customer(customer).Replace("&limit=100", "", StringComparison.Ordinal) + parameter, 400, 11004);
        message.ShouldContain(name);
    }

    [Theory]
    [InlineData("2024-01-10")]
    [InlineData("2024-01-10 08:00:00")]
    [InlineData("2024-01-10T08:00:00.000")]
    [InlineData("2024-01-10T08:00")]
    [InlineData("2024-01-10T08:00:00Z")]
    [InlineData("2024-01-10T08:00:00%2B01:00")]
    [InlineData("2024-1-10T08:00:00")]
    [InlineData("2024-01-10T8:00:00")]
    [InlineData("2024-01-10t08:00:00")]
    [InlineData("%202024-01-10T08:00:00")]
    [InlineData("2024-01-10T08:00:00%20")]
    [InlineData("20240110T080000")]
    [InlineData("02024-01-10T08:00:00")]
    [InlineData("2024-01-10T24:00:00")]
    [InlineData("2024-02-30T08:00:00")]
    [InlineData("0000-01-01T00:00:00")]
    public async Task a_date_in_any_but_the_specs_one_format_is_11004(string date)
    {
        var (t, customer) = await CustomerAsync();
        foreach (var name in new[] { "startDate", "endDate" })
            (await t.LedgerFailsAsync(LedgerApi.Customer(customer, $"&{name}={date}"), 400, 11004)).ShouldContain(name);
    }

    /// <summary>
    /// Every combination of startDate, endDate and includeLastOneYearData at both ends of the
    /// calendar: windows that would reach past year 1 or 9999 are clamped to it (nothing is there,
    /// so 11003), two dates keep their own rules (11005, 11006); none is a 500.
    /// </summary>
    [Fact]
    public async Task extreme_dates_at_both_ends_of_the_calendar_get_a_spec_answer_never_a_500()
    {
        var (t, customer) = await CustomerAsync();
        string[] dates = ["0001-01-01T00:00:00", "0001-03-01T00:00:00", "9999-10-15T00:00:00", "9999-12-31T23:59:59"];
        string[] years = ["", "&includeLastOneYearData=true", "&includeLastOneYearData=false"];
        var cases = 0;
        foreach (var year in years)
        {
            foreach (var date in dates)
            {
                await t.LedgerFailsAsync(LedgerApi.Customer(customer, $"&startDate={date}{year}"), 404, 11003);
                await t.LedgerFailsAsync(LedgerApi.Customer(customer, $"&endDate={date}{year}"), 404, 11003);
                cases += 2;
            }
            foreach (var start in dates)
            foreach (var end in dates)
            {
                var span = DateTime.Parse(end, System.Globalization.CultureInfo.InvariantCulture) - DateTime.Parse(start, System.Globalization.CultureInfo.InvariantCulture);
                var (status, code) = span < TimeSpan.Zero ? (400, 11005) : span > TimeSpan.FromDays(90) ? (400, 11006) : (404, 11003);
                await t.LedgerFailsAsync(LedgerApi.Customer(customer, $"&startDate={start}&endDate={end}{year}"), status, code);
                cases++;
            }
        }
        cases.ShouldBe(72);
    }

    [Theory]
    [InlineData("&offset=99999999999", 400, 11004)]
    [InlineData("&offset=2147483647", 404, 11003)]
    [InlineData("&programId=99999999999999999999", 400, 11004)]
    [InlineData("&tillId=%27%20OR%201%3D1%20--", 404, 11003)]
    [InlineData("&alternateCurrencyNames=%27);DROP%20TABLE%20events;--", 400, 9005)]
    [InlineData("&role=%27", 200, 0)]
    public async Task hostile_values_get_a_spec_error_never_a_500(string parameter, int status, int code)
    {
        var (t, customer) = await CustomerAsync();
        if (status == 200) (await t.LedgerOkAsync(LedgerApi.Customer(customer, parameter))).Warnings().Count.ShouldBe(1);
        else await t.LedgerFailsAsync(LedgerApi.Customer(customer, parameter), status, code);
        (await t.LedgerOkAsync(LedgerApi.Customer(customer))).Total().ShouldBe(1);
    }

    [Fact]
    public async Task an_identifier_value_too_large_for_an_id_is_11012()
    {
        var (t, _) = await CustomerAsync();
        await t.LedgerFailsAsync("identifierName=id&identifierValue=99999999999999999999&source=INSTORE", 400, 11012);
        await t.LedgerFailsAsync("type=USERGROUP2&identifierName=groupId&identifierValue=-1&source=INSTORE", 400, 11012);
    }
}

public sealed class LedgerErrorTestsOnSqlite(SqliteDatabase db) : LedgerErrorTests(db), IClassFixture<SqliteDatabase>;

public sealed class LedgerErrorTestsOnPostgres(PostgresDatabase db) : LedgerErrorTests(db), IClassFixture<PostgresDatabase>;
