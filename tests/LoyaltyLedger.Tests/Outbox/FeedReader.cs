using System.Text.Json;
using Dapper;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Outbox;

/// <summary>Reads an organization's change feed (GET /v1/events) and audits it against the ledger.</summary>
public static class FeedReader
{
    /// <summary>Every event of the tenant's organization, page by page, as a consumer that stores its cursor reads them.</summary>
    public static async Task<List<JsonElement>> FeedAsync(this Tenant t, int limit = 1000, string? types = null)
    {
        var events = new List<JsonElement>();
        string? cursor = null;
        for (var page = 0; page < 100_000; page++)
        {
            var url = $"/v1/events?limit={limit}" + (cursor is null ? "" : $"&after={cursor}") + (types is null ? "" : $"&types={types}");
            var answer = await t.GetOkAsync(url);
            var read = answer.GetProperty("events").EnumerateArray().ToList();
            var next = answer.GetProperty("nextCursor").GetString()!;
            events.AddRange(read);
            if (read.Count < limit)
            {
                // Nothing new: the feed says to come back with a cursor that returns nothing again.
                var again = await t.GetOkAsync($"/v1/events?limit={limit}&after={next}" + (types is null ? "" : $"&types={types}"));
                again.GetProperty("events").GetArrayLength().ShouldBe(0);
                again.GetProperty("nextCursor").GetString().ShouldBe(next);
                return events;
            }
            cursor = next;
        }
        throw new InvalidOperationException("The feed never ended.");
    }

    public static string Type(this JsonElement envelope) => envelope.GetProperty("type").GetString()!;

    public static JsonElement Data(this JsonElement envelope) => envelope.GetProperty("data");

    public static IEnumerable<JsonElement> OfType(this IEnumerable<JsonElement> feed, string type) => feed.Where(e => e.Type() == type);

    /// <summary>The type each event name is announced as besides ledger.event.posted.</summary>
    private static readonly Dictionary<string, string> AlsoAs = new()
    {
        ["PointsExpiry"] = "points.expired",
        ["RedemptionReversal"] = "redemption.reversed",
        ["ReturnBill"] = "return.posted",
        ["DelayedAccrual"] = "held_points.released",
        ["CustomerRegistration"] = "customer.registered",
    };

    private sealed record LineRow(long EventId, string EntryType, long Points, long BalanceAfter, string Category, long ProgramId, string? Currency);

    private sealed record WalletRow(string OwnerType, long OwnerId, long ProgramId, string? Currency, string Category, long Balance);

    /// <summary>
    /// What does not hold between the feed and the ledger: every event announced exactly once as
    /// ledger.event.posted with its very lines (and once more as its specific type, with the same
    /// data), every envelope id unique, and each wallet's balance.changed a chain from 0 to its
    /// balance now.
    /// </summary>
    public static async Task<List<string>> ViolationsAsync(DatabaseFixture db, Tenant t, IReadOnlyList<JsonElement> feed)
    {
        var violations = new List<string>();
        var ids = feed.Select(e => e.GetProperty("id").GetString()!).ToList();
        if (ids.Distinct().Count() != ids.Count) violations.Add("an envelope id appears twice");
        if (feed.Any(e => e.GetProperty("orgId").GetInt64() != t.OrgId)) violations.Add("an envelope of another organization");

        var events = (await db.Database.ReadAsync(c => c.QueryAsync<(long EventId, string EventName)>(
            "SELECT event_id, event_name FROM events WHERE org_id = @org ORDER BY event_id", new { org = t.OrgId }), CancellationToken.None)).ToList();
        var lines = (await db.Database.ReadAsync(c => c.QueryAsync<LineRow>(
            """
            SELECT le.event_id AS EventId, le.entry_type AS EntryType, le.points AS Points, le.balance_after AS BalanceAfter,
                le.category AS Category, le.program_id AS ProgramId, cu.name AS Currency
            FROM ledger_entries le LEFT JOIN currencies cu ON cu.org_id = le.org_id AND cu.currency_id = le.currency_id
            WHERE le.org_id = @org ORDER BY le.entry_id
            """, new { org = t.OrgId }), CancellationToken.None)).ToLookup(l => l.EventId);

        var posted = feed.OfType("ledger.event.posted").GroupBy(e => e.Data().GetProperty("eventId").GetInt64()).ToDictionary(g => g.Key, g => g.ToList());
        foreach (var (eventId, name) in events)
        {
            if (!posted.TryGetValue(eventId, out var announced) || announced.Count != 1)
            {
                violations.Add($"event {eventId} ({name}) announced {announced?.Count ?? 0} times");
                continue;
            }
            var data = announced[0].Data();
            if (data.GetProperty("eventName").GetString() != name) violations.Add($"event {eventId} announced as {data.GetProperty("eventName")}");
            var announcedLines = data.GetProperty("lines").EnumerateArray().Select(l => (
                l.GetProperty("entryType").GetString(), l.GetProperty("points").GetString(), l.GetProperty("balanceAfter").GetString(),
                l.GetProperty("category").GetString(), l.GetProperty("programId").GetInt64(),
                l.TryGetProperty("currency", out var c) ? c.GetString() : null)).ToList();
            var stored = lines[eventId].Select(l => ((string?)l.EntryType, (string?)new Points(l.Points).ToString(), (string?)new Points(l.BalanceAfter).ToString(),
                (string?)l.Category, l.ProgramId, l.Currency)).ToList();
            if (!announcedLines.SequenceEqual(stored)) violations.Add($"event {eventId} ({name}) announced lines {string.Join("; ", announcedLines)}, stored {string.Join("; ", stored)}");

            var specific = AlsoAs.GetValueOrDefault(name);
            // tier.changed names the posting that caused an upgrade, but is about the owner's tier (checked below).
            var others = feed.Where(e => e.Type() != "ledger.event.posted" && e.Type() != "balance.changed" && e.Type() != "points.expiring"
                && e.Type() != "tier.changed" && e.Data().GetProperty("eventId").GetInt64() == eventId).ToList();
            if (specific is null ? others.Count != 0 : others.Count != 1 || others[0].Type() != specific || others[0].Data().GetRawText() != data.GetRawText())
                violations.Add($"event {eventId} ({name}) also announced as [{string.Join(", ", others.Select(Type))}], expected [{specific}]");
        }
        foreach (var extra in posted.Keys.Except(events.Select(e => e.EventId)))
            violations.Add($"event {extra} announced but not in the ledger");

        // Every tier change is announced once, in the order of the tier history, saying what the row says.
        var tierChanges = (await db.Database.ReadAsync(c => c.QueryAsync<(string OwnerType, long OwnerId, string FromTier, string ToTier, string Cause)>(
            "SELECT owner_type, owner_id, from_tier, to_tier, cause FROM tier_changes WHERE org_id = @org ORDER BY change_id", new { org = t.OrgId }),
            CancellationToken.None)).Select(r => $"{r.OwnerType}:{r.OwnerId} {r.FromTier}->{r.ToTier} {r.Cause}").ToList();
        var tiersAnnounced = feed.OfType("tier.changed").Select(e => e.Data()).Select(d =>
            $"{d.GetProperty("ownerType").GetString()}:{d.GetProperty("ownerId").GetInt64()} {d.GetProperty("fromTier").GetString()}->{d.GetProperty("toTier").GetString()} {d.GetProperty("cause").GetString()}").ToList();
        if (!tiersAnnounced.SequenceEqual(tierChanges))
            violations.Add($"tier changes announced [{string.Join("; ", tiersAnnounced)}], recorded [{string.Join("; ", tierChanges)}]");

        var wallets = await db.Database.ReadAsync(c => c.QueryAsync<WalletRow>(
            """
            SELECT w.owner_type AS OwnerType, w.owner_id AS OwnerId, w.program_id AS ProgramId, cu.name AS Currency, w.category AS Category, w.balance AS Balance
            FROM wallets w LEFT JOIN currencies cu ON cu.org_id = w.org_id AND cu.currency_id = w.currency_id
            WHERE w.org_id = @org
            """, new { org = t.OrgId }), CancellationToken.None);
        var chains = feed.OfType("balance.changed").GroupBy(e => WalletOf(e.Data())).ToDictionary(g => g.Key, g => g.ToList());
        foreach (var w in wallets)
        {
            var key = $"{w.OwnerType}:{w.OwnerId}:{w.ProgramId}:{w.Currency}:{w.Category}";
            var chain = chains.GetValueOrDefault(key) ?? [];
            var balance = "0.000";
            foreach (var change in chain)
            {
                var data = change.Data();
                if (data.GetProperty("oldBalance").GetString() != balance) violations.Add($"{key}: a change from {data.GetProperty("oldBalance")} after {balance}");
                if (data.GetProperty("newBalance").GetString() == data.GetProperty("oldBalance").GetString()) violations.Add($"{key}: a change that changes nothing");
                balance = data.GetProperty("newBalance").GetString()!;
            }
            if (balance != new Points(w.Balance).ToString()) violations.Add($"{key}: the changes end at {balance}, the balance is {new Points(w.Balance)}");
            chains.Remove(key);
        }
        foreach (var orphan in chains.Keys) violations.Add($"balance.changed of a wallet that does not exist: {orphan}");
        return violations;
    }

    private static string WalletOf(JsonElement data) =>
        $"{data.GetProperty("ownerType").GetString()}:{data.GetProperty("ownerId").GetInt64()}:{data.GetProperty("programId").GetInt64()}:" +
        $"{(data.TryGetProperty("currency", out var c) ? c.GetString() : null)}:{data.GetProperty("category").GetString()}";
}
