using Npgsql;

namespace LoyaltyLedger.Tests.Infrastructure;

/// <summary>
/// What the tests that hold a lock in one transaction and start a write against it wait for: a
/// transaction of the test's database waiting for a lock of a given type.
/// </summary>
public static class PostgresLocks
{
    /// <summary>Lock requests of the database not granted yet, of one lock type (<c>transactionid</c>: a row another transaction holds).</summary>
    public static async Task<long> UngrantedAsync(string connectionString, string lockType)
    {
        await using var c = new NpgsqlConnection(connectionString);
        await c.OpenAsync();
        await using var q = new NpgsqlCommand(
            """
            SELECT COUNT(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE a.datname = current_database() AND NOT l.granted AND l.locktype = @type
            """, c);
        q.Parameters.AddWithValue("type", lockType);
        return (long)(await q.ExecuteScalarAsync())!;
    }

    /// <summary>Polls <paramref name="condition"/> until it holds; fails after 30 s, naming <paramref name="what"/>.</summary>
    public static async Task WaitForAsync(string what, Func<Task<bool>> condition)
    {
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (!await condition())
        {
            if (waited.Elapsed > TimeSpan.FromSeconds(30)) throw new TimeoutException($"Waited 30 s for {what}.");
            await Task.Delay(20);
        }
    }
}
