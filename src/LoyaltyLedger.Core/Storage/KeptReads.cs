using System.Collections;
using System.Data.Common;
using System.Globalization;
using Dapper;

namespace LoyaltyLedger.Storage;

/// <summary>
/// A query that runs the statement its connection already compiled for the same text, where the
/// dialect says connections keep them (<see cref="SqlDialect.KeepsCompiledStatements"/>): on
/// SQLite, through <see cref="PreparedCommands"/> on the reader connections
/// <see cref="LedgerDatabase"/> keeps open. On PostgreSQL Npgsql prepares the statement itself, and
/// the arguments are bound by position (<see cref="PositionalSql"/>), or by Dapper where they cannot be.
/// </summary>
/// <remarks>
/// For the reads that run the same few texts over and over: the pages of the two read APIs, where
/// SQLite's parser and planner took about twice as long as running the statement (a <c>perf</c>
/// profile of the points-ledger read), and the short lookups of customers, balances, vault
/// accounts, tiers, schedules, groups, the program list and the change feed (for the ones measured,
/// 10-40% less server CPU per request, measured when they were moved here). Arguments are plain values (an
/// anonymous object or Dapper's <see cref="DynamicParameters"/>); a list (Dapper's <c>IN @list</c>,
/// which rewrites the text) goes to Dapper.
/// <para>
/// Unlike Dapper, a command run here does not join the connection's open transaction by itself: a
/// read inside a transaction passes it as <c>tx</c>.
/// </para>
/// </remarks>
public static class KeptReads
{
    public static async Task<List<T>> QueryAsync<T>(DbConnection c, SqlDialect dialect, string sql, object? args, DbTransaction? tx, CancellationToken ct)
    {
        var values = StatementBatch.ArgumentsOf(args);
        if (!AsTheyAre(args, values))
            return (await c.QueryAsync<T>(new CommandDefinition(sql, args, tx, cancellationToken: ct))).AsList();
        DbCommand command;
        if (dialect.KeepsCompiledStatements)
        {
            command = PreparedCommands.Of(c).Rent(sql);
            // A name the text does not use is bound too, and SQLite passes over it.
            StatementBatch.Bind(values, command.CreateParameter, command.Parameters, asWritten: true);
        }
        else
        {
            // PostgreSQL: a command of its own, bound by position (PositionalSql), so Npgsql does not
            // read the text for its names on every execution. Whatever cannot be bound so, a text
            // left to Npgsql or a value Dapper would convert first (an enum, a type handler's), goes
            // to Dapper as before.
            command = c.CreateCommand();
            if (!values.TrueForAll(v => IsPlain(v.Value))
                || PositionalSql.Bind(dialect, sql, values, command.CreateParameter, command.Parameters, byNameToo: false) is not { } text)
            {
                await command.DisposeAsync();
                return (await c.QueryAsync<T>(new CommandDefinition(sql, args, tx, cancellationToken: ct))).AsList();
            }
            command.CommandText = text;
        }
        command.Transaction = tx;
        try
        {
            await using var reader = await command.ExecuteReaderAsync(ct);
            return await RowsAsync<T>(reader, ct);
        }
        finally
        {
            // A kept command must not hold this read's values (a customer's email, an account number).
            command.Parameters.Clear();
            command.Transaction = null;
            if (!dialect.KeepsCompiledStatements) await command.DisposeAsync();
        }
    }

    /// <summary>The rows of the reader's current result, each as Dapper maps it to <typeparamref name="T"/>.</summary>
    internal static async Task<List<T>> RowsAsync<T>(DbDataReader reader, CancellationToken ct)
    {
        var rows = new List<T>();
        // Typed as object: Dapper's parser for a plain value (a string) is built for object; a
        // plain value is converted as Dapper converts it (SQLite's integers are 64-bit).
        var parse = reader.GetRowParser<object>(typeof(T));
        var plain = Nullable.GetUnderlyingType(typeof(T)) ?? typeof(T);
        while (await reader.ReadAsync(ct))
        {
            var row = parse(reader);
            rows.Add(row switch
            {
                T typed => typed,
                // NULL where the type has no null is an error, as it is with Dapper, not a 0.
                null => default(T) is null ? default! : throw new InvalidOperationException($"A NULL value cannot be read as {typeof(T).Name}."),
                _ => (T)Convert.ChangeType(row, plain, CultureInfo.InvariantCulture)!,
            });
        }
        return rows;
    }

    /// <summary>The one row, or the default when there is none; more than one is an error, as Dapper's <c>QuerySingleOrDefault</c>.</summary>
    public static async Task<T?> QuerySingleOrDefaultAsync<T>(DbConnection c, SqlDialect dialect, string sql, object? args, DbTransaction? tx, CancellationToken ct)
    {
        var rows = await QueryAsync<T>(c, dialect, sql, args, tx, ct);
        return rows.Count switch
        {
            0 => default,
            1 => rows[0],
            _ => throw new InvalidOperationException("The query returned more than one row where one was expected."),
        };
    }

    /// <summary>The first column of the first row (the default when there is no row), as Dapper's <c>ExecuteScalar</c>.</summary>
    public static async Task<T?> ScalarAsync<T>(DbConnection c, SqlDialect dialect, string sql, object? args, DbTransaction? tx, CancellationToken ct) =>
        (await QueryAsync<T>(c, dialect, sql, args, tx, ct)) is [var first, ..] ? first : default;

    /// <summary>
    /// The statement's positional form (<see cref="PositionalSql"/>) and its values, when both bind as
    /// they are, as <see cref="QueryAsync{T}"/> binds them on PostgreSQL; null when only Dapper could bind them.
    /// </summary>
    internal static (PositionalSql Statement, List<(string Name, object? Value, Type? Declared)> Values)? Positional(string sql, object? args)
    {
        var values = StatementBatch.ArgumentsOf(args);
        return AsTheyAre(args, values) && values.TrueForAll(v => IsPlain(v.Value)) && PositionalSql.Of(sql) is { } statement ? (statement, values) : null;
    }

    /// <summary>
    /// A value the provider binds as it is, as Dapper would pass it. Lists never get here: they go to
    /// Dapper before (<see cref="AsTheyAre"/>).
    /// </summary>
    private static bool IsPlain(object? value) => value is null or string or long or int or short or bool or double or decimal or byte[] or Guid
        or DateTime or DateTimeOffset;

    /// <summary>
    /// Whether the values bind as they are: not when one is a list (Dapper's <c>IN @list</c> rewrites
    /// the text), nor for a <see cref="DynamicParameters"/> built from a template object, whose
    /// names it does not list; Dapper binds those.
    /// </summary>
    private static bool AsTheyAre(object? args, List<(string Name, object? Value, Type? Declared)> values) =>
        !(args is DynamicParameters && values.Count == 0) && !values.Any(v => v.Value is IEnumerable and not string and not byte[]);
}
