using System.Net;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Tests.Infrastructure;
using Npgsql;

namespace LoyaltyLedger.Tests.Ledger;

/// <summary>
/// <c>renumber</c> against a registration in flight, on PostgreSQL (on SQLite the two are serialized
/// by the file's one writer, so there is no lock order to get wrong). <c>renumber</c> locks the
/// wallets' table first and then the events'; a registration that held the events' while it waited
/// for the wallets' would deadlock with it. The test holds a registration just after it has written
/// (an uncommitted row of its owner's event count, taken by another transaction, makes its event's
/// count wait), starts <c>renumber</c>, and looks at the locks: <c>renumber</c> must be the one
/// waiting for the wallets, not holding them.
/// </summary>
public sealed class RenumberLockOrderTestsOnPostgres(PostgresDatabase db) : IClassFixture<PostgresDatabase>
{
    [Fact]
    public async Task a_registration_in_flight_holds_its_wallets_before_its_event_so_renumber_waits_for_it_instead_of_deadlocking()
    {
        var t = await db.Host.NewTenantAsync();
        await t.NewShopAsync();
        const long customerId = 987_654_321;

        await using var blocker = new NpgsqlConnection(db.ConnectionString);
        await blocker.OpenAsync();
        await using var held = await blocker.BeginTransactionAsync();
        await using (var row = new NpgsqlCommand(
            """
            INSERT INTO owner_event_counts (org_id, owner_type, owner_id, events, points_events, currency_events, last_event_at)
            VALUES (@org, 'CUSTOMER', @owner, 0, 0, 0, 0)
            """, blocker, held))
        {
            row.Parameters.AddWithValue("org", t.OrgId);
            row.Parameters.AddWithValue("owner", customerId);
            await row.ExecuteNonQueryAsync();
        }

        var registration = t.PostAsync("/v1/customers", new { customerId, firstName = "Held", lastName = "Registration" });
        await PostgresLocks.WaitForAsync("the registration to wait for the held count", async () => await PostgresLocks.UngrantedAsync(db.ConnectionString, "transactionid") > 0);

        var renumber = PageNumbers.RenumberAsync(db.Database, t.OrgId, CancellationToken.None);
        await PostgresLocks.WaitForAsync("renumber to wait for a table lock", async () => await PostgresLocks.UngrantedAsync(db.ConnectionString, "relation") > 0);

        // The registration holds the wallets' table (its wallet locks came first), so renumber waits
        // at its first lock and holds none of the others.
        (await TableLocksAsync(granted: false)).ShouldBe(["wallets"]);
        (await TableLocksAsync(granted: true, mode: "ExclusiveLock")).ShouldBeEmpty();

        await held.RollbackAsync();
        using var answer = await registration.WaitAsync(TimeSpan.FromSeconds(60));
        answer.StatusCode.ShouldBe(HttpStatusCode.Created);
        await renumber.WaitAsync(TimeSpan.FromSeconds(60));

        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
        (await PageNumbers.RenumberAsync(db.Database, t.OrgId, CancellationToken.None)).Total.ShouldBe(0);
    }

    /// <summary>The ledger tables renumber locks on which a table lock is waiting (or held, in <paramref name="mode"/>).</summary>
    private async Task<List<string>> TableLocksAsync(bool granted, string? mode = null)
    {
        await using var c = new NpgsqlConnection(db.ConnectionString);
        await c.OpenAsync();
        await using var q = new NpgsqlCommand(
            """
            SELECT DISTINCT r.relname FROM pg_locks l JOIN pg_class r ON r.oid = l.relation
            WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                AND l.locktype = 'relation' AND l.granted = @granted AND (@mode::text IS NULL OR l.mode = @mode)
                AND r.relname IN ('wallets', 'owner_event_counts', 'events', 'ledger_entries')
            ORDER BY r.relname
            """, c);
        q.Parameters.AddWithValue("granted", granted);
        q.Parameters.Add(new NpgsqlParameter("mode", NpgsqlTypes.NpgsqlDbType.Text) { Value = (object?)mode ?? DBNull.Value });
        var names = new List<string>();
        await using var reader = await q.ExecuteReaderAsync();
        while (await reader.ReadAsync()) names.Add(reader.GetString(0));
        return names;
    }
}
