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
