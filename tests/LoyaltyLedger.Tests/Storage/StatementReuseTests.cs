using Microsoft.Data.Sqlite;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Tests.Storage;

/// <summary>
/// On SQLite a connection keeps the commands its batches ran and runs the same text again through the
/// statement it compiled (Storage/PreparedCommands.cs). A kept statement must behave as a fresh one:
/// new values each run, rows read in full, and a run after one that failed is unaffected by it.
/// </summary>
public class StatementReuseTests
{
    [Fact]
    public async Task a_statement_run_again_on_one_connection_takes_its_new_values_even_after_a_run_that_failed()
    {
        await using var connection = new SqliteConnection("Data Source=:memory:");
        await connection.OpenAsync(CancellationToken.None);
        await using (var create = connection.CreateCommand())
        {
            create.CommandText = "CREATE TABLE lots (lot_id INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE, points INTEGER NOT NULL)";
            await create.ExecuteNonQueryAsync(CancellationToken.None);
        }
        await using var transaction = (SqliteTransaction)await connection.BeginTransactionAsync(CancellationToken.None);
        const string insert = "INSERT INTO lots (code, points) VALUES (@code, @points) RETURNING lot_id";
        const string read = "SELECT code, points FROM lots WHERE points >= @min ORDER BY lot_id";

        var ids = new List<long>();
        foreach (var (code, points) in new[] { ("a", 10L), ("b", 20L) })
        {
            var batch = new StatementBatch(connection, transaction, SqlDialect.Sqlite);
            var inserted = batch.Query(insert, new { code, points });
            ids.Add((await batch.RunAsync(CancellationToken.None)).SingleLong(inserted));
        }

        // The same text with a duplicate code fails; the next run of it, with a new code, must not.
        var duplicate = new StatementBatch(connection, transaction, SqlDialect.Sqlite);
        duplicate.Query(insert, new { code = "a", points = 99L });
        await Should.ThrowAsync<SqliteException>(() => duplicate.RunAsync(CancellationToken.None));
        var after = new StatementBatch(connection, transaction, SqlDialect.Sqlite);
        var third = after.Query(insert, new { code = "c", points = 30L });
        var all = after.Query(read, new { min = 0L });
        var some = after.Query(read, new { min = 20L });
        var results = await after.RunAsync(CancellationToken.None);

        ids.Add(results.SingleLong(third));
        ids.ShouldBe([1, 2, 3]);
        results.Rows(all).Select(r => $"{r[0]}={r[1]}").ShouldBe(["a=10", "b=20", "c=30"]);
        results.Rows(some).Select(r => $"{r[0]}={r[1]}").ShouldBe(["b=20", "c=30"]);
    }
}
