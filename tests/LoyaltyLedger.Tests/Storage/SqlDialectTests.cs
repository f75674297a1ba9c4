using Dapper;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Storage;

/// <summary>What each database's dialect promises: the transactions it begins and the errors it recognizes.</summary>
public abstract class SqlDialectTests(DatabaseFixture db)
{
    private static long NewScope() => -Random.Shared.NextInt64(1, long.MaxValue / 2);

    private Task InsertCounterAsync(long scope, string name) =>
        db.Database.WriteAsync((c, tx) => c.ExecuteAsync(
            "INSERT INTO id_counters (org_id, name, last_value) VALUES (@scope, @name, 1)", new { scope, name }, tx), CancellationToken.None);

    [Fact]
    public async Task a_read_transaction_counts_one_snapshot_while_writes_commit_beside_it()
    {
        var scope = NewScope();
        await InsertCounterAsync(scope, "a");
        const string count = "SELECT COUNT(*) FROM id_counters WHERE org_id = @scope";

        await using var connection = await db.Database.OpenAsync(CancellationToken.None);
        await using var read = await db.Database.Dialect.BeginReadAsync(connection, CancellationToken.None);
        var before = await connection.ExecuteScalarAsync<long>(count, new { scope }, read);
        await InsertCounterAsync(scope, "b");
        var after = await connection.ExecuteScalarAsync<long>(count, new { scope }, read);
        await read.CommitAsync();

        before.ShouldBe(1);
        after.ShouldBe(1);
        (await db.Database.ReadAsync(c => c.ExecuteScalarAsync<long>(count, new { scope }), CancellationToken.None)).ShouldBe(2);
    }

    [Fact]
    public async Task a_duplicate_key_is_a_unique_violation_of_its_constraint_and_not_transient()
    {
        var scope = NewScope();
        await InsertCounterAsync(scope, "a");

        var error = await Should.ThrowAsync<System.Data.Common.DbException>(() => InsertCounterAsync(scope, "a"));

        db.Database.Dialect.IsUniqueViolation(error).ShouldBeTrue();
        db.Database.Dialect.IsUniqueViolation(error, "id_counters").ShouldBeTrue();
        db.Database.Dialect.IsUniqueViolation(error, "no_such_constraint").ShouldBeFalse();
        db.Database.Dialect.IsTransient(error).ShouldBeFalse();
    }

    [Fact]
    public async Task a_list_of_ids_bound_as_one_argument_selects_those_rows_through_a_batch_and_through_dapper()
    {
        var scope = NewScope();
        foreach (var name in new[] { "a", "b", "c", "d" }) await InsertCounterAsync(scope, name);
        var dialect = db.Database.Dialect;
        var sql = $"UPDATE id_counters SET last_value = last_value + 1 WHERE org_id = @scope AND {dialect.InIdList("last_value", "ids")} AND name <> 'd'";

        var (viaBatch, viaDapper, none) = await db.Database.WriteAsync(async (c, tx) =>
        {
            // Every counter holds 1: the batch moves a, b and c to 2, then Dapper moves them to 3.
            var batch = new StatementBatch(c, tx, dialect);
            var changed = batch.Execute(sql, new { scope, ids = dialect.IdList([1L, 7L]) });
            var results = await batch.RunAsync();
            var again = await c.ExecuteAsync(sql, new { scope, ids = dialect.IdList([2L]) }, tx);
            var nothing = await c.ExecuteAsync(sql, new { scope, ids = dialect.IdList([]) }, tx);
            return (results.Affected(changed), again, nothing);
        }, CancellationToken.None);

        viaBatch.ShouldBe(3);
        viaDapper.ShouldBe(3);
        none.ShouldBe(0);
        var values = await db.Database.ReadAsync(c => c.QueryAsync<(string Name, long Value)>(
            "SELECT name, last_value FROM id_counters WHERE org_id = @scope ORDER BY name", new { scope }), CancellationToken.None);
        values.ShouldBe([("a", 3L), ("b", 3L), ("c", 3L), ("d", 1L)]);
    }
}

public sealed class SqlDialectTestsOnSqlite(SqliteDatabase db) : SqlDialectTests(db), IClassFixture<SqliteDatabase>;

public sealed class SqlDialectTestsOnPostgres(PostgresDatabase db) : SqlDialectTests(db), IClassFixture<PostgresDatabase>;
