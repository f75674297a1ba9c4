using System.Text.Json;
using Dapper;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.FaultTest;

/// <summary>
/// After the load: compares what the clients were told with what the database holds. Every
/// acknowledged operation must be there exactly once (its key and its events), nothing refused or
/// unacknowledged may be there, each customer's balance must be what the acknowledged answers add
/// up to, points must be conserved, and <c>LoyaltyLedger verify</c> must pass.
/// </summary>
public static class FaultAudit
{
    private static readonly Dictionary<OperationKind, string> EventNameOf = new()
    {
        [OperationKind.EarnBill] = "TransactionAdd",
        [OperationKind.EarnEvent] = "GenericEvent",
        [OperationKind.Redeem] = "PointsRedemption",
        [OperationKind.Transfer] = "PointsTransfer",
        [OperationKind.Return] = "ReturnBill",
    };

    public static async Task<bool> RunAsync(FaultSettings settings, long orgId, IReadOnlyList<Operation> ops, RetryingClient client, string storageArgs,
        string? label = null)
    {
        var ct = CancellationToken.None;
        var acked = ops.Where(o => o.Outcome == Outcome.Acknowledged).ToList();
        var refused = ops.Where(o => o.Outcome == Outcome.Refused).ToList();
        var anomalies = ops.Where(o => o.Outcome == Outcome.Anomaly).ToList();
        var unresolved = ops.Where(o => o.Outcome is Outcome.Unresolved or Outcome.Pending).ToList();
        var failures = new List<string>();

        await using var db = settings.Mode == StorageMode.Postgres
            ? LedgerDatabase.ForPostgres(settings.Postgres!)
            : LedgerDatabase.ForSqliteFile(Path.Combine(settings.DataDir!, "ledger.db"));
        var names = EventNameOf.Values.ToArray();
        var (keys, events, balances, sums) = await db.ReadAsync(async c =>
        {
            var k = (await c.QueryAsync<(string Key, long Status, string? Body)>(
                "SELECT idempotency_key, status_code, response_body FROM idempotency_keys WHERE org_id = @orgId AND idempotency_key LIKE 'ft-%'",
                new { orgId })).ToList();
            var e = (await c.QueryAsync<(long EventId, string EventName)>(
                "SELECT event_id, event_name FROM events WHERE org_id = @orgId", new { orgId })).ToList();
            var b = (await c.QueryAsync<(long CustomerId, long Balance)>(
                "SELECT owner_id, SUM(balance) FROM wallets WHERE org_id = @orgId AND owner_type = 'CUSTOMER' GROUP BY owner_id", new { orgId })).ToList();
            var s = (await c.QueryAsync<(string EventName, string EntryType, long Points)>(
                """
                SELECT v.event_name, e.entry_type, SUM(e.points)
                FROM ledger_entries e JOIN events v ON v.event_id = e.event_id
                WHERE e.org_id = @orgId GROUP BY v.event_name, e.entry_type
                """, new { orgId })).ToList();
            return (k, e, b, s);
        }, ct);

        // Every acknowledged write is present exactly once: its key, holding the answer the client got,
        // and each of its events, of the right kind.
        var keyRows = keys.ToDictionary(k => k.Key);
        var eventRows = events.GroupBy(e => e.EventId).ToDictionary(g => g.Key, g => g.ToList());
        var lost = 0;
        foreach (var op in acked)
        {
            var present = keyRows.TryGetValue(op.Key, out var row) && row.Status == op.Status && SameEvents(row.Body, op.EventIds)
                && op.EventIds.Count == (op.Kind == OperationKind.Transfer ? 2 : 1)
                && op.EventIds.All(id => eventRows.TryGetValue(id, out var rows) && rows.Count == 1 && rows[0].EventName == EventNameOf[op.Kind]);
            if (!present)
            {
                lost++;
                if (lost <= 10) failures.Add($"acknowledged {op.Kind} {op.Key} (events {string.Join(",", op.EventIds)}) is not in the database as answered");
            }
        }

        // No write beyond the acknowledged ones: no key of a refused or unfinished operation, and no
        // event of the test's kinds that no acknowledged answer names (a retry that posted twice).
        var ackedKeys = acked.Select(o => o.Key).ToHashSet();
        var strayKeys = keys.Count(k => !ackedKeys.Contains(k.Key));
        var ackedEvents = acked.SelectMany(o => o.EventIds).ToHashSet();
        var strayEvents = events.Count(e => names.Contains(e.EventName) && !ackedEvents.Contains(e.EventId));
        var duplicated = strayKeys + strayEvents;
        if (strayKeys > 0) failures.Add($"{strayKeys} idempotency keys in the database that no acknowledged operation holds");
        if (strayEvents > 0) failures.Add($"{strayEvents} events in the database that no acknowledged answer names");
        foreach (var (kind, name) in EventNameOf)
        {
            var expected = acked.Where(o => o.Kind == kind).Sum(o => o.EventIds.Count);
            var actual = events.Count(e => e.EventName == name);
            if (expected != actual) failures.Add($"{name}: {actual} events in the database, {expected} acknowledged");
        }

        // Points: each customer's balance is what the acknowledged answers add up to, and the
        // database's own totals balance: issued - redeemed - returned - expired = sum of balances.
        var expectedBalance = acked.SelectMany(o => o.Movements).GroupBy(m => m.CustomerId).ToDictionary(g => g.Key, g => g.Sum(m => m.Thousandths));
        var actualBalance = balances.ToDictionary(b => b.CustomerId, b => b.Balance);
        var mismatches = expectedBalance.Keys.Union(actualBalance.Keys)
            .Count(id => expectedBalance.GetValueOrDefault(id) != actualBalance.GetValueOrDefault(id));
        if (mismatches > 0) failures.Add($"{mismatches} customers' balances differ from the acknowledged operations");

        long Db(string eventName, string entryType) => sums.Where(s => s.EventName == eventName && s.EntryType == entryType).Sum(s => s.Points);
        var dbIssued = sums.Where(s => s.EntryType == "CREDIT" && s.EventName != "PointsTransfer").Sum(s => s.Points);
        var dbRedeemed = Db("PointsRedemption", "DEBIT");
        var dbReturned = Db("ReturnBill", "DEBIT");
        var dbExpired = Db("PointsExpiry", "DEBIT");
        var dbOtherDebits = sums.Where(s => s.EntryType == "DEBIT" && s.EventName is not ("PointsRedemption" or "ReturnBill" or "PointsExpiry" or "PointsTransfer")).Sum(s => s.Points);
        var dbBalances = balances.Sum(b => b.Balance);
        var dbMovedOut = Db("PointsTransfer", "DEBIT");
        var dbMovedIn = Db("PointsTransfer", "CREDIT");

        long Client(OperationKind kind, int sign) => acked.Where(o => o.Kind == kind).SelectMany(o => o.Movements)
            .Where(m => Math.Sign(m.Thousandths) == sign).Sum(m => Math.Abs(m.Thousandths));
        var issued = Client(OperationKind.EarnBill, 1) + Client(OperationKind.EarnEvent, 1);
        var redeemed = Client(OperationKind.Redeem, -1);
        var returned = Client(OperationKind.Return, -1);
        var moved = Client(OperationKind.Transfer, -1);
        var clientBalances = expectedBalance.Values.Sum();

        if (dbIssued - dbRedeemed - dbReturned - dbExpired - dbOtherDebits != dbBalances)
            failures.Add("the database's totals do not balance: issued - redeemed - returned - expired != sum of balances");
        if (dbMovedOut != dbMovedIn) failures.Add($"transfers debited {P(dbMovedOut)} but credited {P(dbMovedIn)}");
        if (issued != dbIssued || redeemed != dbRedeemed || returned != dbReturned || moved != dbMovedOut)
            failures.Add("the clients' totals of acknowledged operations differ from the database's");
        if (issued - redeemed - returned - dbExpired != dbBalances) failures.Add("the clients' totals do not add up to the database's balances");

        var refusedWithWrites = refused.Count(o => keyRows.ContainsKey(o.Key));
        if (refusedWithWrites > 0) failures.Add($"{refusedWithWrites} refused operations left a key behind");
        if (anomalies.Count > 0)
        {
            failures.Add($"{anomalies.Count} unexpected answers");
            foreach (var a in anomalies.Take(5)) failures.Add($"  {a.Kind} {a.Key}: {a.Status} {a.ResponseBody}");
        }
        if (unresolved.Count > 0) failures.Add($"{unresolved.Count} operations without a definitive answer within {settings.SettleLimit.TotalSeconds:0} s after the load");

        var (verifyExit, verifyOutput) = await FaultRun.RunServerCommandAsync(settings, $"verify {storageArgs}", TimeSpan.FromSeconds(120));
        if (verifyExit != 0) failures.Add($"LoyaltyLedger verify exited {verifyExit}");

        var retried = ops.Where(o => o.Attempts > 1).ToList();
        var refusals = string.Join(", ", refused.GroupBy(o => o.ErrorCode).OrderBy(g => g.Key).Select(g => $"{g.Key} {g.Count()}"));
        var byKind = string.Join(", ", EventNameOf.Keys.Select(k => $"{k} {acked.Count(o => o.Kind == k)}"));
        Console.WriteLine($"""
              operations attempted {ops.Count}, acknowledged {acked.Count}, refused {refused.Count}{(refused.Count > 0 ? $" ({refusals})" : "")}, unexpected {anomalies.Count}, unresolved {unresolved.Count}
              acknowledged by kind: {byKind}
              retried {retried.Count} operations with {retried.Sum(o => o.Attempts - 1)} extra requests (connection errors {client.ConnectionErrors}, timeouts {client.Timeouts}, 5xx {client.ServerErrors}); {acked.Count(o => o.Replayed)} answered as replays
              lost {lost}, duplicated {duplicated}, refused-but-written {refusedWithWrites}, balance mismatches {mismatches} of {expectedBalance.Count} customers
              points (clients):  issued {P(issued)} - redeemed {P(redeemed)} - returned {P(returned)} - expired {P(dbExpired)} = {P(issued - redeemed - returned - dbExpired)}; transferred {P(moved)}; sum of expected balances {P(clientBalances)}
              points (database): issued {P(dbIssued)} - redeemed {P(dbRedeemed)} - returned {P(dbReturned)} - expired {P(dbExpired)} = {P(dbIssued - dbRedeemed - dbReturned - dbExpired - dbOtherDebits)}; transferred {P(dbMovedOut)}; sum of balances {P(dbBalances)}
            """);
        foreach (var line in verifyOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries)) Console.WriteLine($"    {line}");
        foreach (var failure in failures) Console.WriteLine($"  FAIL: {failure}");
        label ??= $"fault test ({(settings.Mode == StorageMode.Postgres ? "postgres" : "sqlite")})";
        Console.WriteLine(failures.Count == 0 ? $"{label}: PASS" : $"{label}: FAIL ({failures.Count} check(s))");
        return failures.Count == 0;
    }

    private static bool SameEvents(string? storedBody, List<long> eventIds)
    {
        if (storedBody is null) return false;
        using var json = JsonDocument.Parse(storedBody);
        var stored = new List<long>();
        foreach (var name in new[] { "eventId", "debitEventId", "creditEventId" })
        {
            if (json.RootElement.TryGetProperty(name, out var id)) stored.Add(id.GetInt64());
        }
        return stored.SequenceEqual(eventIds);
    }

    private static string P(long thousandths) => new Points(thousandths).ToString();
}
