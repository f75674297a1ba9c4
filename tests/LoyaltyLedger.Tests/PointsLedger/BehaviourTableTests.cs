using LoyaltyLedger.Ledger;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.PointsLedger;

/// <summary>
/// The spec's table "Behaviour of alternate currency and point category parameters", one test per
/// row, for a customer holding points and Stars in the REGULAR and PROMISED categories and points
/// in TRIGGER_BASED. "Not provided / false" rows run with the parameter left out and with =false.
/// </summary>
public abstract class BehaviourTableTests(DatabaseFixture db)
{
    private const string PointsOpening = "points/Main/OPENING_BALANCE/0.000";
    private const string PointsRegular = "points/Main/CREDIT/10.000";
    private const string PointsPromised = "points/DelayedAccrualPointCategory/CREDIT/7.000";
    private const string PointsTrigger = "points/ExternalTriggerBasedPointCategory/CREDIT/2.000";
    private const string StarsOpening = "Stars/Main/OPENING_BALANCE/0.000";
    private const string StarsRegular = "Stars/Main/CREDIT/5.000";
    private const string StarsPromised = "Stars/DelayedAccrualPointCategory/CREDIT/3.000";

    private async Task<(Tenant T, long Customer)> ArrangeAsync()
    {
        var t = await db.Host.NewTenantAsync();
        var (programId, currencies) = await t.NewProgramAsync("Main program", currencies: "Stars");
        var customer = await t.NewCustomerAsync();
        await t.AwardAsync(customer, "10", programId: programId);
        await t.AwardAsync(customer, "5", "Stars", programId);
        await db.CreditCategoryAsync(t, customer, programId, 0, PointCategory.Promised, 7);
        await db.CreditCategoryAsync(t, customer, programId, currencies["Stars"], PointCategory.Promised, 3);
        await db.CreditCategoryAsync(t, customer, programId, 0, PointCategory.TriggerBased, 2, "ExternalTrigger");
        return (t, customer);
    }

    private static void ShouldShow(System.Text.Json.JsonElement body, params string[] lines) =>
        body.Lines().ShouldBe(lines.Order(StringComparer.Ordinal).ToList(), body.ToString());

    [Theory]
    [InlineData("")]
    [InlineData("&excludePointCategories=false")]
    public async Task row_1_include_currencies_with_a_category_shows_points_and_currencies_of_that_category(string exclude)
    {
        var (t, customer) = await ArrangeAsync();
        ShouldShow(await t.LedgerOkAsync(LedgerApi.Customer(customer, "&includeAlternateCurrencies=true&pointCategoryType=PROMISED" + exclude)),
            PointsPromised, StarsPromised);
        ShouldShow(await t.LedgerOkAsync(LedgerApi.Customer(customer, "&includeAlternateCurrencies=true&pointCategoryType=REGULAR" + exclude)),
            PointsOpening, PointsRegular, StarsOpening, StarsRegular);
        ShouldShow(await t.LedgerOkAsync(LedgerApi.Customer(customer, "&includeAlternateCurrencies=true&pointCategoryType=TRIGGER_BASED" + exclude)),
            PointsTrigger);
    }

    [Theory]
    [InlineData("")]
    [InlineData("&excludePointCategories=false")]
    public async Task row_2_include_currencies_without_a_category_shows_points_and_currencies_of_every_category(string exclude)
    {
        var (t, customer) = await ArrangeAsync();
        ShouldShow(await t.LedgerOkAsync(LedgerApi.Customer(customer, "&includeAlternateCurrencies=true" + exclude)),
            PointsOpening, PointsRegular, PointsPromised, PointsTrigger, StarsOpening, StarsRegular, StarsPromised);
    }

    [Fact]
    public async Task row_3_include_currencies_and_exclude_point_categories_shows_currencies_only()
    {
        var (t, customer) = await ArrangeAsync();
        var body = await t.LedgerOkAsync(LedgerApi.Customer(customer, "&includeAlternateCurrencies=true&excludePointCategories=true"));
        ShouldShow(body, StarsOpening, StarsRegular, StarsPromised);
        body.Warnings().ShouldBeEmpty();
    }

    [Fact]
    public async Task row_4_exclude_point_categories_ignores_the_category_and_shows_currencies_only()
    {
        var (t, customer) = await ArrangeAsync();
        var body = await t.LedgerOkAsync(LedgerApi.Customer(customer, "&includeAlternateCurrencies=true&pointCategoryType=REGULAR&excludePointCategories=true"));
        ShouldShow(body, StarsOpening, StarsRegular, StarsPromised);
        body.Warnings().ShouldHaveSingleItem().ShouldContain("pointCategoryType was ignored");
    }

    [Theory]
    [InlineData("")]
    [InlineData("&includeAlternateCurrencies=false")]
    [InlineData("&includeAlternateCurrencies=false&excludePointCategories=false")]
    public async Task row_5_without_currencies_or_a_category_shows_points_of_every_category_and_no_currencies(string flags)
    {
        var (t, customer) = await ArrangeAsync();
        ShouldShow(await t.LedgerOkAsync(LedgerApi.Customer(customer, flags)), PointsOpening, PointsRegular, PointsPromised, PointsTrigger);
    }

    [Theory]
    [InlineData("")]
    [InlineData("&includeAlternateCurrencies=false&excludePointCategories=false")]
    public async Task row_6_a_category_without_currencies_shows_points_of_that_category_and_no_currencies(string flags)
    {
        var (t, customer) = await ArrangeAsync();
        ShouldShow(await t.LedgerOkAsync(LedgerApi.Customer(customer, "&pointCategoryType=PROMISED" + flags)), PointsPromised);
        ShouldShow(await t.LedgerOkAsync(LedgerApi.Customer(customer, "&pointCategoryType=REGULAR" + flags)), PointsOpening, PointsRegular);
        ShouldShow(await t.LedgerOkAsync(LedgerApi.Customer(customer, "&pointCategoryType=TRIGGER_BASED" + flags)), PointsTrigger);
    }

    [Fact]
    public async Task alternate_currency_names_show_the_named_currencies_only()
    {
        var (t, customer) = await ArrangeAsync();
        ShouldShow(await t.LedgerOkAsync(LedgerApi.Customer(customer, "&alternateCurrencyNames=Stars")), StarsOpening, StarsRegular, StarsPromised);
        ShouldShow(await t.LedgerOkAsync(LedgerApi.Customer(customer, "&alternateCurrencyNames=stars&pointCategoryType=PROMISED")), StarsPromised);
    }

    [Fact]
    public async Task alternate_currency_names_with_include_currencies_list_every_currency_with_a_warning()
    {
        var (t, customer) = await ArrangeAsync();
        var body = await t.LedgerOkAsync(LedgerApi.Customer(customer, "&includeAlternateCurrencies=true&excludePointCategories=true&alternateCurrencyNames=Stars"));
        ShouldShow(body, StarsOpening, StarsRegular, StarsPromised);
        body.Warnings().ShouldHaveSingleItem().ShouldContain("alternateCurrencyNames was ignored");
    }

    [Fact]
    public async Task exclude_point_categories_without_currencies_is_ignored_with_a_warning()
    {
        var (t, customer) = await ArrangeAsync();
        var body = await t.LedgerOkAsync(LedgerApi.Customer(customer, "&excludePointCategories=true"));
        ShouldShow(body, PointsOpening, PointsRegular, PointsPromised, PointsTrigger);
        body.Warnings().ShouldHaveSingleItem().ShouldContain("excludePointCategories");
    }
}

public sealed class BehaviourTableTestsOnSqlite(SqliteDatabase db) : BehaviourTableTests(db), IClassFixture<SqliteDatabase>;

public sealed class BehaviourTableTestsOnPostgres(PostgresDatabase db) : BehaviourTableTests(db), IClassFixture<PostgresDatabase>;
