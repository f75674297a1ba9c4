using System.Text.Json;
using Dapper;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Webhooks;

/// <summary>Servers that deliver webhooks, on real time, over a test class's database, and reads of what they did.</summary>
public static class WebhookHarness
{
    /// <summary>Settings for a delivering test server: to 127.0.0.1, fast polls, retries in a fraction of a second.</summary>
    public static Dictionary<string, string?> Settings(string retrySchedule = "00:00:00.200,00:00:00.300,00:00:00.400", bool allowPrivate = true,
        string timeout = "00:00:10", int disableAfter = 3) => new()
    {
        ["Ledger:Webhooks:Dispatch"] = "true",
        ["Ledger:Webhooks:AllowPrivateTargets"] = allowPrivate ? "true" : "false",
        ["Ledger:Webhooks:RetrySchedule"] = retrySchedule,
        ["Ledger:Webhooks:PollInterval"] = "00:00:00.050",
        ["Ledger:Webhooks:Timeout"] = timeout,
        ["Ledger:Webhooks:DisableAfterFailedDeliveries"] = disableAfter.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["Ledger:ExpiryInterval"] = "0",
    };

    /// <summary>A server of its own (as another process would be) over the class's database, delivering on a clock that runs with real time.</summary>
    public static Task<TestServerHost> StartAsync(DatabaseFixture db, Dictionary<string, string?>? settings = null) =>
        TestServerHost.StartAsync(db.OpenSecondInstance(), settings ?? Settings(), clock: new TestClock(DateTimeOffset.UtcNow, ticking: true));

    /// <summary>Creates an endpoint; returns its id and secret.</summary>
    public static async Task<(long Id, string Secret)> NewWebhookAsync(this Tenant t, string url, params string[] events)
    {
        var created = await t.PostOkAsync("/v1/webhooks", new { url, events = events.Length == 0 ? ["*"] : events });
        return (created.GetProperty("id").GetInt64(), created.GetProperty("secret").GetString()!);
    }

    /// <summary>The endpoint's delivery log, oldest first.</summary>
    public static async Task<List<JsonElement>> DeliveriesAsync(this Tenant t, long webhookId)
    {
        var page = await t.GetOkAsync($"/v1/webhooks/{webhookId}/deliveries?limit=100");
        return page.GetProperty("deliveries").EnumerateArray().Reverse().ToList();
    }

    /// <summary>The position of each outbox event (by event id): the commit order deliveries must follow.</summary>
    public static async Task<Dictionary<long, long>> PositionsAsync(LedgerDatabase database, long orgId) =>
        (await database.ReadAsync(c => c.QueryAsync<(long EventId, long Position)>(
            "SELECT event_id, position FROM outbox_events WHERE org_id = @orgId AND position IS NOT NULL", new { orgId }), CancellationToken.None))
        .ToDictionary(r => r.EventId, r => r.Position);
}
