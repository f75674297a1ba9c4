using Dapper;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Storage;

/// <summary>
/// Reads on connections the process keeps (SQLite keeps its reader connections open between reads,
/// with the statements they compiled; PostgreSQL's pool and Npgsql's prepared statements do the
/// same there): a read never sees an earlier read's snapshot, and a kept statement run again with
/// other values answers for those values.
/// </summary>
public abstract class KeptReadsTests(DatabaseFixture db)
{
    private static long NewScope() => -Random.Shared.NextInt64(1, long.MaxValue / 2);

    private static Task InsertAsync(LedgerDatabase database, long scope, string name) =>
        database.WriteAsync((c, tx) => c.ExecuteAsync("INSERT INTO id_counters (org_id, name, last_value) VALUES (@scope, @name, 1)", new { scope, name }, tx),
            CancellationToken.None);

    private static Task<long> CountAsync(LedgerDatabase database, long scope) =>
        database.ReadAsync(c => c.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM id_counters WHERE org_id = @scope", new { scope }), CancellationToken.None);

    [Fact]
    public async Task a_read_that_leaves_a_transaction_open_does_not_pass_its_snapshot_to_the_next_read()
    {
        // A handle of its own, so its kept connections are only this test's.
        await using var database = db.OpenSecondInstance();
        var scope = NewScope();
        await InsertAsync(database, scope, "a");

        var seen = await database.ReadAsync(async c =>
        {
            var open = await c.BeginTransactionAsync();
            return await c.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM id_counters WHERE org_id = @scope", new { scope }, open);
        }, CancellationToken.None);
        seen.ShouldBe(1);
        await InsertAsync(database, scope, "b");

        for (var i = 0; i < 20; i++) (await CountAsync(database, scope)).ShouldBe(2);
    }

    [Fact]
    public async Task a_read_that_leaves_a_data_reader_open_does_not_pass_its_snapshot_to_the_next_read()
    {
        await using var database = db.OpenSecondInstance();
        var scope = NewScope();
        await InsertAsync(database, scope, "a");
        await InsertAsync(database, scope, "b");

        var first = await database.ReadAsync(async c =>
        {
            var command = c.CreateCommand();
            command.CommandText = "SELECT name FROM id_counters WHERE org_id = @scope ORDER BY name";
            var parameter = command.CreateParameter();
            parameter.ParameterName = "@scope";
            parameter.Value = scope;
            command.Parameters.Add(parameter);
            var reader = await command.ExecuteReaderAsync();
            await reader.ReadAsync();
            return reader.GetString(0);
        }, CancellationToken.None);
        first.ShouldBe("a");
        await InsertAsync(database, scope, "c");

        for (var i = 0; i < 20; i++) (await CountAsync(database, scope)).ShouldBe(3);
    }

    [Fact]
    public async Task a_kept_statement_run_again_answers_for_its_new_values_and_a_list_argument_is_expanded()
    {
        await using var database = db.OpenSecondInstance();
        var (first, second) = (NewScope(), NewScope());
        await InsertAsync(database, first, "a");
        await InsertAsync(database, first, "b");
        await InsertAsync(database, second, "c");
        const string sql = "SELECT name FROM id_counters WHERE org_id = @scope ORDER BY name";

        for (var i = 0; i < 3; i++)
        {
            (await database.ReadAsync(c => KeptReads.QueryAsync<string>(c, database.Dialect, sql, new { scope = first }, null, CancellationToken.None), CancellationToken.None))
                .ShouldBe(["a", "b"]);
            (await database.ReadAsync(c => KeptReads.QueryAsync<string>(c, database.Dialect, sql, new { scope = second }, null, CancellationToken.None), CancellationToken.None))
                .ShouldBe(["c"]);
        }
        // A plain value is converted as Dapper converts it (a count is a 64-bit integer on SQLite).
        (await database.ReadAsync(c => KeptReads.QueryAsync<int>(c, database.Dialect, "SELECT COUNT(*) FROM id_counters WHERE org_id = @scope", new { scope = first }, null,
            CancellationToken.None), CancellationToken.None)).ShouldBe([2]);
        // A list goes to Dapper, which expands IN @names into one parameter per item on SQLite and
        // hands Npgsql the array as it is.
        var names = new DynamicParameters();
        names.Add("scope", first);
        names.Add("names", new[] { "b", "z" });
        var inNames = database.Dialect is PostgresDialect ? "name = ANY(@names)" : "name IN @names";
        (await database.ReadAsync(c => KeptReads.QueryAsync<string>(c, database.Dialect,
                $"SELECT name FROM id_counters WHERE org_id = @scope AND {inNames} ORDER BY name", names, null, CancellationToken.None),
            CancellationToken.None)).ShouldBe(["b"]);
    }

    [Fact]
    public async Task tuples_nulls_single_rows_and_scalars_read_as_dapper_reads_them()
    {
        await using var database = db.OpenSecondInstance();
        var scope = NewScope();
        await InsertAsync(database, scope, "a");
        await InsertAsync(database, scope, "b");
        const string one = "SELECT name, last_value FROM id_counters WHERE org_id = @scope AND name = @name";
        Task<T> Read<T>(Func<System.Data.Common.DbConnection, Task<T>> read) => database.ReadAsync(read, CancellationToken.None);

        // A tuple by position, and a nullable tuple: null when no row comes back.
        (await Read(c => KeptReads.QueryAsync<(string Name, long Value)>(c, database.Dialect, one, new { scope, name = "a" }, null, CancellationToken.None)))
            .ShouldBe([("a", 1L)]);
        (await Read(c => KeptReads.QuerySingleOrDefaultAsync<(string Name, long Value)?>(c, database.Dialect, one, new { scope, name = "b" }, null, CancellationToken.None)))
            .ShouldBe(("b", 1L));
        (await Read(c => KeptReads.QuerySingleOrDefaultAsync<(string Name, long Value)?>(c, database.Dialect, one, new { scope, name = "z" }, null, CancellationToken.None)))
            .ShouldBeNull();
        // Two rows where one is expected is an error, as with Dapper's QuerySingleOrDefault.
        await Should.ThrowAsync<InvalidOperationException>(() => Read(c => KeptReads.QuerySingleOrDefaultAsync<string>(c, database.Dialect,
            "SELECT name FROM id_counters WHERE org_id = @scope", new { scope }, null, CancellationToken.None)));
        // A scalar: the first column of the first row; a NULL one and no row at all are null.
        (await Read(c => KeptReads.ScalarAsync<long?>(c, database.Dialect, "SELECT MAX(last_value) + 1 FROM id_counters WHERE org_id = @scope", new { scope }, null,
            CancellationToken.None))).ShouldBe(2);
        (await Read(c => KeptReads.ScalarAsync<long?>(c, database.Dialect, "SELECT MAX(last_value) FROM id_counters WHERE org_id = @scope AND name = 'z'", new { scope }, null,
            CancellationToken.None))).ShouldBeNull();
        (await Read(c => KeptReads.ScalarAsync<string>(c, database.Dialect, "SELECT name FROM id_counters WHERE org_id = @scope AND name = 'z'", new { scope }, null,
            CancellationToken.None))).ShouldBeNull();
        // NULL where the type has no null is an error, as it is with Dapper, not a quiet 0.
        await Should.ThrowAsync<Exception>(() => Read(c => KeptReads.QueryAsync<long>(c, database.Dialect,
            "SELECT MAX(last_value) FROM id_counters WHERE org_id = @scope AND name = 'z'", new { scope }, null, CancellationToken.None)));
    }
}

public sealed class KeptReadsTestsOnSqlite(SqliteDatabase db) : KeptReadsTests(db), IClassFixture<SqliteDatabase>;

public sealed class KeptReadsTestsOnPostgres(PostgresDatabase db) : KeptReadsTests(db), IClassFixture<PostgresDatabase>;
