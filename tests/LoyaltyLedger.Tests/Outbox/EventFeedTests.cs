using System.Text.Json;
using Dapper;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Outbox;

/// <summary>GET /v1/events: the organization's events in commit order, page by page, each exactly once; bad input refused.</summary>
public abstract class EventFeedTests(DatabaseFixture db)
{
    private static string Id(JsonElement e) => e.GetProperty("id").GetString()!;

    private async Task<(Tenant T, Shop Shop, long Customer)> SetUpAsync()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(earnRate: "1");
        var customer = await t.NewCustomerAsync();
        return (t, shop, customer);
    }

    private Task<List<string>> StoredOrderAsync(Tenant t) => db.Database.ReadAsync(async c =>
        (await c.QueryAsync<long>("SELECT event_id FROM outbox_events WHERE org_id = @org ORDER BY position", new { org = t.OrgId }))
            .Select(id => $"evt_{id}").ToList(), CancellationToken.None);

    [Fact]
    public async Task pages_of_any_size_return_every_event_once_in_commit_order_and_a_stored_cursor_continues_with_only_what_is_new()
    {
        var (t, shop, customer) = await SetUpAsync();
        for (var i = 0; i < 6; i++) await t.BillAsync(shop, customer, $"B-{i}", 10m + i);

        var whole = await t.FeedAsync(limit: 1000);
        whole.Select(Id).ShouldBe(await StoredOrderAsync(t));
        foreach (var limit in new[] { 1, 2, 5 })
            (await t.FeedAsync(limit: limit)).Select(Id).ShouldBe(whole.Select(Id));

        var first = await t.GetOkAsync("/v1/events?limit=3");
        first.GetProperty("events").GetArrayLength().ShouldBe(3);
        var cursor = first.GetProperty("nextCursor").GetString()!;
        cursor.ShouldStartWith("c1.");
        var rest = await t.GetOkAsync($"/v1/events?after={cursor}&limit=1000");
        var end = rest.GetProperty("nextCursor").GetString()!;
        rest.GetProperty("events").EnumerateArray().Select(Id).ShouldBe(whole.Skip(3).Select(Id));

        var quiet = await t.GetOkAsync($"/v1/events?after={end}");
        quiet.GetProperty("events").GetArrayLength().ShouldBe(0);
        quiet.GetProperty("nextCursor").GetString().ShouldBe(end);

        await t.AwardAsync(customer, "5");
        var news = await t.GetOkAsync($"/v1/events?after={end}");
        news.GetProperty("events").EnumerateArray().Select(e => e.GetProperty("type").GetString()).ShouldBe(["ledger.event.posted", "balance.changed"]);
        news.GetProperty("events")[0].GetProperty("data").GetProperty("eventName").GetString().ShouldBe("GenericEvent");
    }

    [Fact]
    public async Task a_consumer_of_some_types_gets_only_those_and_its_cursor_moves_past_the_others()
    {
        var (t, shop, customer) = await SetUpAsync();
        await t.BillAsync(shop, customer, "B-1", 10m);

        var none = await t.GetOkAsync("/v1/events?types=return.posted");
        none.GetProperty("events").GetArrayLength().ShouldBe(0);
        var cursor = none.GetProperty("nextCursor").GetString()!;

        await t.PostOkAsync("/v1/returns", new { storeCode = shop.StoreCode, billNumber = "B-1", amount = 5 });
        var returns = await t.GetOkAsync($"/v1/events?types=return.posted,%20customer.registered&after={cursor}");
        returns.GetProperty("events").EnumerateArray().Select(e => e.GetProperty("type").GetString()).ShouldBe(["return.posted"]);

        var filtered = await t.FeedAsync(limit: 2, types: "balance.changed,customer.registered");
        filtered.ShouldAllBe(e => e.GetProperty("type").GetString() == "balance.changed" || e.GetProperty("type").GetString() == "customer.registered");
        filtered.Select(Id).ShouldBe((await t.FeedAsync()).Where(e => filtered.Select(Id).Contains(Id(e))).Select(Id));
        filtered.Count.ShouldBe((await t.FeedAsync()).Count(e => e.GetProperty("type").GetString() is "balance.changed" or "customer.registered"));
    }

    [Fact]
    public async Task a_cursor_skips_the_events_a_types_filter_left_out_so_the_next_call_does_not_read_them_again()
    {
        var (t, shop, customer) = await SetUpAsync();
        var start = (await t.GetOkAsync("/v1/events?types=points.expired")).GetProperty("nextCursor").GetString()!;
        await t.BillAsync(shop, customer, "B-1", 10m);

        var after = await t.GetOkAsync($"/v1/events?types=points.expired&after={start}");
        after.GetProperty("events").GetArrayLength().ShouldBe(0);
        after.GetProperty("nextCursor").GetString().ShouldNotBe(start);
        // What the cursor moved past are only events of other types: the whole feed after it is empty.
        (await t.GetOkAsync($"/v1/events?after={after.GetProperty("nextCursor").GetString()}")).GetProperty("events").GetArrayLength().ShouldBe(0);
    }

    [Fact]
    public async Task a_reader_polling_while_many_postings_commit_at_once_sees_each_event_exactly_once_in_the_order_of_the_feed()
    {
        var (t, shop, _) = await SetUpAsync();
        var customers = new List<long>();
        for (var i = 0; i < 4; i++) customers.Add(await t.NewCustomerAsync());
        var seen = new List<string>();
        string? cursor = null;
        var writing = true;
        var reader = Task.Run(async () =>
        {
            while (true)
            {
                var done = !Volatile.Read(ref writing);
                var page = await t.GetOkAsync("/v1/events?limit=7" + (cursor is null ? "" : $"&after={cursor}"));
                seen.AddRange(page.GetProperty("events").EnumerateArray().Select(Id));
                cursor = page.GetProperty("nextCursor").GetString();
                if (done && page.GetProperty("events").GetArrayLength() == 0) return;
            }
        });
        await Task.WhenAll(customers.Select(c => Task.Run(async () =>
        {
            for (var i = 0; i < 10; i++)
                await t.PostOkAsync("/v1/events", new { customerId = c, eventName = "E", awards = new[] { new { points = "1" } } });
        })));
        Volatile.Write(ref writing, false);
        await reader;

        seen.Count.ShouldBe(seen.Distinct().Count());
        seen.ShouldBe(await StoredOrderAsync(t));
        seen.Count.ShouldBe(5 * 2 + 40 * 2); // five registrations, forty awards, each with its second event
        (await FeedReader.ViolationsAsync(db, t, await t.FeedAsync())).ShouldBeEmpty();
        shop.ProgramId.ShouldBePositive();
    }

    [Fact]
    public async Task another_organizations_events_never_appear_in_the_feed()
    {
        var (t, shop, customer) = await SetUpAsync();
        var (other, otherShop, otherCustomer) = await SetUpAsync();
        await t.BillAsync(shop, customer, "B-1", 10m);
        await other.BillAsync(otherShop, otherCustomer, "B-1", 10m);

        var mine = await t.FeedAsync();
        mine.ShouldAllBe(e => e.GetProperty("orgId").GetInt64() == t.OrgId);
        mine.Select(Id).Intersect((await other.FeedAsync()).Select(Id)).ShouldBeEmpty();
        mine.Count.ShouldBe(4); // the registration (and its customer.registered), the bill and its balance change
    }

    [Fact]
    public async Task a_read_key_reads_the_feed_and_no_key_gets_401()
    {
        var (t, shop, customer) = await SetUpAsync();
        await t.BillAsync(shop, customer, "B-1", 10m);
        var key = await Tenants.IssueKeyAsync(db.Database, t.OrgId, KeyRole.Read, db.Host.Clock, CancellationToken.None);
        var reader = t with { Http = db.Host.Client(key.KeyId, key.Secret) };

        (await reader.FeedAsync()).Select(Id).ShouldBe((await t.FeedAsync()).Select(Id));
        using var anonymous = await db.Host.Client().GetAsync("/v1/events");
        await Tenant.ShouldFailAsync(anonymous, 401, "unauthorized");
    }

    [Theory]
    [InlineData("after=abc", "invalid_cursor")]
    [InlineData("after=c1.", "invalid_cursor")]
    [InlineData("after=c2.MTA", "invalid_cursor")]
    [InlineData("after=c1.LTE", "invalid_cursor")]          // "-1"
    [InlineData("after=c1.MTA=", "invalid_cursor")]         // padded: not the form this feed writes
    [InlineData("after=c1.MDEw", "invalid_cursor")]         // "010": not the form this feed writes
    [InlineData("after=c1.!!!!", "invalid_cursor")]
    [InlineData("after=c1.OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5", "invalid_cursor")] // beyond a 64-bit position
    [InlineData("types=ledger.event.posted,points.exploded", "invalid_request")]
    [InlineData("types=LEDGER.EVENT.POSTED", "invalid_request")]
    [InlineData("types=webhook.test", "invalid_request")]
    [InlineData("types=,", "invalid_request")]
    [InlineData("limit=0", "invalid_request")]
    [InlineData("limit=1001", "invalid_request")]
    [InlineData("limit=-5", "invalid_request")]
    [InlineData("limit=ten", "invalid_request")]
    [InlineData("limit=99999999999", "invalid_request")]
    public async Task bad_parameters_are_refused_with_400_and_their_documented_code_writing_nothing(string query, string code)
    {
        var (t, shop, customer) = await SetUpAsync();
        await t.BillAsync(shop, customer, "B-1", 10m);
        await t.FeedAsync();
        var before = await LedgerAudit.SnapshotAsync(db.Database, t.OrgId);

        using var response = await t.Http.GetAsync("/v1/events?" + query);
        var body = await Tenant.ShouldFailAsync(response, 400, code);

        body.GetProperty("detail").GetString()!.ShouldNotContain("System.");
        (await LedgerAudit.SnapshotAsync(db.Database, t.OrgId)).ShouldBe(before);
    }
}

public sealed class EventFeedTestsOnSqlite(SqliteDatabase db) : EventFeedTests(db), IClassFixture<SqliteDatabase>;

public sealed class EventFeedTestsOnPostgres(PostgresDatabase db) : EventFeedTests(db), IClassFixture<PostgresDatabase>;
