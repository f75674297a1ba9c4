using LoyaltyLedger.Server.Cli;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Lifecycle;

/// <summary>The operator's <c>expire --as-of</c> command, against a SQLite data directory of its own.</summary>
public sealed class ExpireCommandTests : IAsyncLifetime
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "loyaltyledger-tests", Guid.NewGuid().ToString("N"));

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync()
    {
        try { Directory.Delete(_dir, recursive: true); }
        catch (IOException) { /* a pooled handle may linger; the temp dir is reclaimed later */ }
        return Task.CompletedTask;
    }

    [Fact]
    public async Task the_expire_command_expires_what_was_due_at_as_of_and_a_second_run_expires_nothing_more()
    {
        long orgId, customer;
        var database = LedgerDatabase.ForSqliteFile(Path.Combine(_dir, "ledger.db"));
        await Migrations.ApplyAsync(database, CancellationToken.None);
        await using (var host = await TestServerHost.StartAsync(database))
        {
            host.Clock.Set(new DateTimeOffset(2025, 1, 1, 10, 0, 0, TimeSpan.Zero));
            var t = await host.NewTenantAsync();
            await t.NewShopAsync(expiry: new { kind = "DATE_EARNED", days = 30 });
            customer = await t.NewCustomerAsync();
            await t.AwardAsync(customer, "100");
            host.Clock.Set(new DateTimeOffset(2025, 1, 10, 10, 0, 0, TimeSpan.Zero));
            await t.AwardAsync(customer, "20");
            orgId = t.OrgId;
        }

        (await Commands.RunAsync(["expire", "--as-of", "2025-02-05T00:00:00Z", "--data-dir", _dir])).ShouldBe(0);
        (await Commands.RunAsync(["expire", "--as-of", "2025-02-05T00:00:00Z", "--data-dir", _dir, "--org", orgId.ToString(System.Globalization.CultureInfo.InvariantCulture)])).ShouldBe(0);
        (await Commands.RunAsync(["expire", "--as-of", "not-a-date", "--data-dir", _dir])).ShouldBe(2);

        await using var reopened = LedgerDatabase.ForSqliteFile(Path.Combine(_dir, "ledger.db"));
        (await LedgerProbe.LinesAsync(reopened, orgId, customer)).ShouldBe([
            "GenericEvent CREDIT REGULAR 100.000 = 100.000",
            "GenericEvent CREDIT REGULAR 20.000 = 120.000",
            "PointsExpiry DEBIT REGULAR 100.000 = 20.000",
        ]);
        (await LedgerProbe.LotsAsync(reopened, orgId, customer)).ShouldBe(["0.000/100.000 until 2025-01-31", "20.000/20.000 until 2025-02-09"]);
        await LedgerProbe.AssertInvariantsAsync(reopened, orgId);
    }
}
