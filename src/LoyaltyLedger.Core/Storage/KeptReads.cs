using System.Collections;
using System.Globalization;
using System.Data.Common;
using Dapper;
using Microsoft.Data.Sqlite;

namespace LoyaltyLedger.Storage;

/// <summary>
/// A query that runs the statement its connection already compiled for the same text, where the
/// connection keeps them: on SQLite, through <see cref="PreparedCommands"/> on the reader
/// connections <see cref="LedgerDatabase"/> keeps open. On PostgreSQL it is Dapper's query, and
/// Npgsql prepares the statement itself.
/// </summary>
/// <remarks>
/// For the pages of the two read APIs, which run the same few texts over and over: SQLite's parser
/// and planner took about twice as long as running the statement (a <c>perf</c> profile of the
/// points-ledger read). Arguments are plain values (an anonymous object or Dapper's
/// <see cref="DynamicParameters"/>); a list (Dapper's <c>IN @list</c>, which rewrites the text) goes
/// to Dapper.
/// </remarks>
public static class KeptReads
{
    public static async Task<List<T>> QueryAsync<T>(DbConnection c, string sql, object? args, DbTransaction? tx, CancellationToken ct)
    {
        if (c is not SqliteConnection || Values(args) is not { } values)
            return (await c.QueryAsync<T>(new CommandDefinition(sql, args, tx, cancellationToken: ct))).AsList();
        var command = PreparedCommands.Of(c).Rent(sql);
        command.Transaction = tx;
        try
        {
            foreach (var (name, value) in values)
            {
                // Only the names the text uses (a name that only begins another is bound too, and unused).
                if (!sql.Contains("@" + name, StringComparison.Ordinal)) continue;
                var parameter = command.CreateParameter();
                parameter.ParameterName = "@" + name;
                parameter.Value = value ?? DBNull.Value;
                command.Parameters.Add(parameter);
            }
            await using var reader = await command.ExecuteReaderAsync(ct);
            var rows = new List<T>();
            // Typed as object: Dapper's parser for a plain value (a string) is built for object; a
            // plain value is converted as Dapper converts it (SQLite's integers are 64-bit).
            var parse = reader.GetRowParser<object>(typeof(T));
            var plain = Nullable.GetUnderlyingType(typeof(T)) ?? typeof(T);
            while (await reader.ReadAsync(ct))
            {
                var row = parse(reader);
                rows.Add(row is T typed ? typed : (T)Convert.ChangeType(row, plain, CultureInfo.InvariantCulture)!);
            }
            return rows;
        }
        finally
        {
            // A kept command must not hold this read's values (a customer's email, an account number).
            command.Parameters.Clear();
            command.Transaction = null;
        }
    }

    /// <summary>
    /// The arguments as names and plain values: Dapper's <see cref="DynamicParameters"/> built with
    /// <c>Add</c>, an object's properties, or names and values; null (Dapper then binds them) for
    /// a list, or for a <see cref="DynamicParameters"/> built from a template object, whose names it
    /// does not list.
    /// </summary>
    private static List<(string Name, object? Value)>? Values(object? args)
    {
        var values = new List<(string, object?)>();
        switch (args)
        {
            case null:
                return values;
            case DynamicParameters dynamic:
                var lookup = (SqlMapper.IParameterLookup)dynamic;
                foreach (var name in dynamic.ParameterNames) values.Add((name, lookup[name]));
                if (values.Count == 0) return null;
                break;
            case IEnumerable<KeyValuePair<string, object?>> named:
                foreach (var (name, value) in named) values.Add((name, value));
                break;
            default:
                foreach (var property in args.GetType().GetProperties().Where(p => p.GetIndexParameters().Length == 0))
                    values.Add((property.Name, property.GetValue(args)));
                break;
        }
        return values.Any(v => v.Item2 is IEnumerable and not string and not byte[]) ? null : values;
    }
}
