using Dapper;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Storage;

/// <summary>
/// Statements written with named placeholders go to PostgreSQL numbered (<see cref="PositionalSql"/>),
/// so Npgsql does not read each text on every execution; the reading must find the placeholders
/// exactly where Npgsql would, and leave every text it cannot read so to Npgsql.
/// </summary>
public sealed class PositionalSqlTests
{
    [Fact]
    public void each_distinct_name_is_numbered_once_in_order_of_first_use_whatever_its_case()
    {
        var positional = PositionalSql.Rewrite("UPDATE t SET a = @first, b = @Second WHERE c = @FIRST AND d = @second_2")!;
        positional.Sql.ShouldBe("UPDATE t SET a = $1, b = $2 WHERE c = $1 AND d = $3");
        positional.Names.ShouldBe(["first", "Second", "second_2"]);
    }

    [Fact]
    public void quoted_strings_quoted_names_comments_casts_and_operators_are_left_as_they_are()
    {
        var positional = PositionalSql.Rewrite(
            "SELECT 'mail@example.com', 'it''s @not', \"@col\" -- @gone\nFROM t WHERE d @> @doc::jsonb AND n = @n;")!;
        positional.Sql.ShouldBe("SELECT 'mail@example.com', 'it''s @not', \"@col\" -- @gone\nFROM t WHERE d @> $1::jsonb AND n = $2;");
        positional.Names.ShouldBe(["doc", "n"]);
    }

    [Theory]
    [InlineData("SELECT 1")]
    [InlineData("SELECT $1, @a")]
    [InlineData("/* @a */ SELECT @a")]
    [InlineData("SELECT :a")]
    [InlineData("SELECT @a; SELECT @b")]
    [InlineData("SELECT E'\\n' || @a")]
    [InlineData("SELECT @a.b")]
    [InlineData("SELECT 'unclosed @a")]
    public void a_text_it_does_not_read_as_npgsql_does_is_left_to_npgsql(string sql) =>
        PositionalSql.Rewrite(sql).ShouldBeNull();
}

/// <summary>The same statements through a <see cref="StatementBatch"/> and <see cref="KeptReads"/> on both databases.</summary>
public abstract class PositionalBindingTests(DatabaseFixture db)
{
    [Fact]
    public async Task a_repeated_name_and_a_name_in_a_literal_bind_their_own_values()
    {
        var table = "positional_probe_" + Guid.NewGuid().ToString("N")[..8];
        var insert = $"INSERT INTO {table} (a, b, note) VALUES (@a, @b, '@a ' || @note) RETURNING a + b";
        var select = $"SELECT note FROM {table} WHERE a = @a AND b = @b AND a < @a + 1";
        var (sum, viaBatch, viaKeptRead) = await db.Database.WriteAsync(async (c, tx) =>
        {
            await c.ExecuteAsync($"CREATE TABLE {table} (a bigint NOT NULL, b bigint NOT NULL, note text)", transaction: tx);
            var batch = new StatementBatch(c, tx, db.Database.Dialect);
            var inserted = batch.Query(insert, new { a = 2L, b = 40L, note = "kept" });
            var selected = batch.Query(select, new Dictionary<string, object?> { ["@a"] = 2L, ["b"] = 40L });
            var results = await batch.RunAsync();
            var read = await KeptReads.QueryAsync<string>(c, db.Database.Dialect, select, new { a = 2L, b = 40L }, tx, CancellationToken.None);
            return (results.SingleLong(inserted), (string?)results.Rows(selected).Single()[0], read.Single());
        }, CancellationToken.None);

        sum.ShouldBe(42);
        viaBatch.ShouldBe("@a kept");
        viaKeptRead.ShouldBe("@a kept");
        // Numbered only where the dialect binds by position.
        PositionalSql.IsKept(insert).ShouldBe(db.Database.Dialect.BindsPositionally);
        PositionalSql.IsKept(select).ShouldBe(db.Database.Dialect.BindsPositionally);
    }

    [Fact]
    public async Task a_name_without_a_value_fails_as_it_does_when_bound_by_name()
    {
        var error = await Should.ThrowAsync<Exception>(() => db.Database.WriteAsync(async (c, tx) =>
        {
            var batch = new StatementBatch(c, tx, db.Database.Dialect);
            batch.Query("SELECT @given + @missing", new { given = 1L });
            return await batch.RunAsync();
        }, CancellationToken.None));
        error.Message.ShouldContain("missing");
    }
}

public sealed class PositionalBindingTestsOnSqlite(SqliteDatabase db) : PositionalBindingTests(db), IClassFixture<SqliteDatabase>;

public sealed class PositionalBindingTestsOnPostgres(PostgresDatabase db) : PositionalBindingTests(db), IClassFixture<PostgresDatabase>
{
    [Fact]
    public void postgres_binds_by_position_and_sqlite_by_name()
    {
        SqlDialect.Postgres.BindsPositionally.ShouldBeTrue();
        SqlDialect.Sqlite.BindsPositionally.ShouldBeFalse();
    }
}
