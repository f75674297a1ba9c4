using System.Net;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;
using LoyaltyLedger.Tests.PointsLedger;
using LoyaltyLedger.Tests.Vault;

namespace LoyaltyLedger.Tests.Server;

/// <summary>
/// The Ledger-Consistency-Token on both databases: PostgreSQL writes answer with one, SQLite writes
/// with none; a malformed token is refused by every read that takes one, on both. (Reads from a real
/// replica are in ReadReplicaTests.)
/// </summary>
public abstract class ConsistencyTokenTests(DatabaseFixture db)
{
    private const string TokenHeader = "Ledger-Consistency-Token";

    [Fact]
    public async Task a_write_answers_with_a_consistency_token_on_postgres_and_without_one_on_sqlite()
    {
        var t = await db.Host.NewTenantAsync();
        var v = await t.NewVaultAsync();
        using var response = await t.PostAsync("/v1/transactions",
            new { customerId = v.CustomerId, billNumber = "B-1", amount = 10m, storeCode = v.Shop.StoreCode, tillCode = v.Shop.TillCode, programId = v.ProgramId });
        response.StatusCode.ShouldBe(HttpStatusCode.Created);

        if (db.Provider == DatabaseProvider.Sqlite)
        {
            response.Headers.Contains(TokenHeader).ShouldBeFalse();
            return;
        }
        var token = response.Headers.GetValues(TokenHeader).Single();
        WalPosition.TryParse(token, out _).ShouldBeTrue(token);
        // Without replicas configured the token changes nothing, but it is taken.
        using var read = new HttpRequestMessage(HttpMethod.Get, $"/v1/customers/{v.CustomerId}/balances");
        read.Headers.Add(TokenHeader, token);
        (await t.Http.SendAsync(read)).StatusCode.ShouldBe(HttpStatusCode.OK);
    }

    [Theory]
    [InlineData("banana")]
    [InlineData("0/")]
    [InlineData("123456789/0")]
    [InlineData("0/1A, nope")]
    public async Task a_malformed_consistency_token_is_refused_with_400_by_every_read_that_takes_one(string token)
    {
        var t = await db.Host.NewTenantAsync();
        var v = await t.NewVaultAsync();

        foreach (var path in new[] { $"/v1/customers/{v.CustomerId}/balances", "/v1/events", v.AccountPath, v.HistoryPath, "/v1/exports/ledger.csv" })
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, path);
            request.Headers.TryAddWithoutValidation(TokenHeader, token);
            using var response = await t.Http.SendAsync(request);
            var body = await Tenant.ShouldFailAsync(response, 400, "invalid_request");
            body.GetProperty("detail").GetString()!.ShouldContain(TokenHeader);
        }

        using var ledger = new HttpRequestMessage(HttpMethod.Get, LedgerApi.Path + "?" + LedgerApi.Customer(v.CustomerId));
        ledger.Headers.TryAddWithoutValidation(TokenHeader, token);
        using var refused = await t.Http.SendAsync(ledger);
        var text = await refused.Content.ReadAsStringAsync();
        ((int)refused.StatusCode).ShouldBe(400, text);
        text.ShouldContain("11004");
        text.ShouldContain(TokenHeader);
    }
}

public sealed class ConsistencyTokenTestsOnSqlite(SqliteDatabase db) : ConsistencyTokenTests(db), IClassFixture<SqliteDatabase>;

public sealed class ConsistencyTokenTestsOnPostgres(PostgresDatabase db) : ConsistencyTokenTests(db), IClassFixture<PostgresDatabase>;
