using Dapper;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;
using Npgsql;

namespace LoyaltyLedger.Tests.Storage;

/// <summary>
/// Statements written with named placeholders go to PostgreSQL numbered (<see cref="PositionalSql"/>),
/// so Npgsql does not read each text on every execution; the reading must find the placeholders
/// exactly where Npgsql would, leave every text it cannot read so to Npgsql, and bind each number
/// the value Npgsql would have bound to the name.
/// </summary>
public sealed class PositionalSqlTests
{
    [Fact]
    public void each_distinct_name_is_numbered_once_in_order_of_first_use_and_a_name_in_another_case_is_another_name()
    {
        var positional = PositionalSql.Rewrite("UPDATE t SET a = @first, b = @Second WHERE c = @first AND d = @second_2 AND e = @FIRST")!;
        positional.Sql.ShouldBe("UPDATE t SET a = $1, b = $2 WHERE c = $1 AND d = $3 AND e = $4");
        positional.Names.ShouldBe(["first", "Second", "second_2", "FIRST"]);
    }

    [Fact]
    public void quoted_strings_quoted_names_comments_casts_and_operators_are_left_as_they_are()
    {
        var positional = PositionalSql.Rewrite(
            "SELECT 'mail@example.com', 'it''s @not', \"@col\" -- @gone\nFROM t -- @gone too\rWHERE d @> @doc::jsonb AND @@t AND n = @n;")!;
        positional.Sql.ShouldBe("SELECT 'mail@example.com', 'it''s @not', \"@col\" -- @gone\nFROM t -- @gone too\rWHERE d @> $1::jsonb AND @@t AND n = $2;");
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

    private static List<(string Name, object? Value, Type? Declared)> Values(params (string Name, object? Value)[] values) =>
        [.. values.Select(v => (v.Name, v.Value, (Type?)null))];

    private static (bool Bound, List<(string Name, object? Value)> Parameters) Bind(string sql, List<(string Name, object? Value, Type? Declared)> values)
    {
        using var command = new NpgsqlCommand();
        var bound = PositionalSql.Rewrite(sql)!.TryBind(values, command.CreateParameter, command.Parameters);
        return (bound, [.. command.Parameters.Select(p => (p.ParameterName, p.Value))]);
    }

    [Fact]
    public void each_number_takes_its_names_value_unnamed_in_order()
    {
        var (bound, parameters) = Bind("SELECT @b, @a, @b, @c", Values(("a", 1L), ("unused", 9L), ("b", "two"), ("c", null)));
        bound.ShouldBeTrue();
        parameters.ShouldBe([("", "two"), ("", 1L), ("", DBNull.Value)]);
    }

    [Fact]
    public void a_name_takes_the_value_written_alike_first_then_one_with_a_prefix_or_in_another_case()
    {
        Bind("SELECT @a, @A", Values(("A", 2L), ("a", 1L))).Parameters.ShouldBe([("", 1L), ("", 2L)]);
        Bind("SELECT @org, @Kind", Values(("@org", 1L), ("kind", "card"))).Parameters.ShouldBe([("", 1L), ("", "card")]);
        // Past eight values they are looked up by hash, alike.
        var many = Values([.. Enumerable.Range(0, 12).Select(i => ($"v{i}", (object?)(long)i)), ("@org", 100L), ("KIND", "card")]);
        Bind("SELECT @v11, @org, @kind, @v0", many).Parameters.ShouldBe([("", 11L), ("", 100L), ("", "card"), ("", 0L)]);
    }

    [Fact]
    public void a_name_without_a_value_binds_nothing()
    {
        var (bound, parameters) = Bind("SELECT @given, @missing", Values(("given", 1L)));
        bound.ShouldBeFalse();
        parameters.ShouldBeEmpty();
    }
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

    [Fact]
    public async Task a_kept_read_with_a_value_dapper_converts_first_still_reads()
    {
        // An enum is bound by Dapper as its number; bound by position as it is, Npgsql would refuse it.
        var rows = await db.Database.ReadAsync(c => KeptReads.QueryAsync<long>(c, db.Database.Dialect,
            "SELECT @kind + 1", new { kind = DayOfWeek.Tuesday }, null, CancellationToken.None), CancellationToken.None);
        rows.ShouldBe([3L]);
    }
}

public sealed class PositionalBindingTestsOnSqlite(SqliteDatabase db) : PositionalBindingTests(db), IClassFixture<SqliteDatabase>;

public sealed class PositionalBindingTestsOnPostgres(PostgresDatabase db) : PositionalBindingTests(db), IClassFixture<PostgresDatabase>;
