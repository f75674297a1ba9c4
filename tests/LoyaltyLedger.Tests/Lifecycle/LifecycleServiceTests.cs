using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.Configuration;

namespace LoyaltyLedger.Tests.Lifecycle;

/// <summary>The background lifecycle service, on a server of its own with a short Ledger:ExpiryInterval.</summary>
public sealed class LifecycleServiceTests : IAsyncLifetime
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
    public async Task the_background_service_expires_due_points_on_its_interval_by_the_injected_clock()
    {
        await using var database = LedgerDatabase.ForSqliteFile(Path.Combine(_dir, "ledger.db"));
        await Migrations.ApplyAsync(database, CancellationToken.None);
        var clock = new TestClock(new DateTimeOffset(2025, 1, 1, 10, 0, 0, TimeSpan.Zero));
        await using var app = LedgerServer.Build(new LedgerServerOptions
        {
            Database = database,
            Clock = clock,
            Configure = builder =>
            {
                builder.WebHost.UseTestServer();
                builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { [LifecycleService.IntervalKey] = "00:00:00.100" });
            },
        });
        await app.StartAsync();

        var org = await Tenants.CreateOrganizationAsync(database, "service test", clock, CancellationToken.None);
        var key = await Tenants.IssueKeyAsync(database, org.OrgId, KeyRole.Admin, clock, CancellationToken.None);
        var client = app.GetTestClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{key.KeyId}:{key.Secret}")));
        (await client.PostAsJsonAsync("/v1/programs", new { name = "P", earnRate = "1", expiry = new { kind = "DATE_EARNED", days = 30 } })).EnsureSuccessStatusCode();
        var customer = await (await client.PostAsJsonAsync("/v1/customers", new { firstName = "A", email = "a@example.com" })).Content.ReadFromJsonAsync<System.Text.Json.JsonElement>();
        var customerId = customer.GetProperty("customerId").GetInt64();
        (await client.PostAsJsonAsync("/v1/events", new { customerId, eventName = "Welcome", awards = new[] { new { points = "100" } } })).EnsureSuccessStatusCode();

        // Not due yet: ticks pass and nothing is written.
        await Task.Delay(400);
        (await LedgerProbe.LinesAsync(database, org.OrgId, customerId)).Count.ShouldBe(1);

        clock.Set(new DateTimeOffset(2025, 2, 1, 10, 0, 0, TimeSpan.Zero));
        var lines = new List<string>();
        for (var wait = 0; wait < 50 && lines.Count < 2; wait++)
        {
            await Task.Delay(100);
            lines = await LedgerProbe.LinesAsync(database, org.OrgId, customerId);
        }
        await Task.Delay(300);
        (await LedgerProbe.LinesAsync(database, org.OrgId, customerId)).ShouldBe([
            "GenericEvent CREDIT REGULAR 100.000 = 100.000",
            "PointsExpiry DEBIT REGULAR 100.000 = 0.000",
        ]);
        await app.StopAsync();
    }
}
