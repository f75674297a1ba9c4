using System.Collections.Concurrent;
using System.Data;
using System.Data.Common;
using System.Linq.Expressions;
using System.Reflection;
using Dapper;

namespace LoyaltyLedger.Storage;

/// <summary>
/// Several statements of one transaction sent to the database together. On PostgreSQL they go as
/// one <see cref="DbBatch"/>: one network round trip instead of one per statement, which is most of
/// what a posting costs (a bill is a dozen statements, and on a busy machine every round trip is a
/// hand-off between the server, Npgsql and a PostgreSQL backend). On SQLite, which runs in-process
/// and has no round trips to save, they run one after another, each through the statement its
/// connection compiled the last time it ran the same SQL (<see cref="PreparedCommands"/>). Either way they run in the order
/// added, so a statement sees the writes of the ones before it; an error in any of them fails the
/// whole call (and the caller's transaction with it).
/// </summary>
/// <param name="connection">The connection of <paramref name="transaction"/>.</param>
/// <param name="transaction">The transaction the statements run in.</param>
/// <param name="dialect">Fills in the statements' placeholders.</param>
/// <param name="cancellation">The token <see cref="RunAsync"/> runs with when it is given none (a posting's request token).</param>
public sealed class StatementBatch(DbConnection connection, DbTransaction transaction, SqlDialect dialect, CancellationToken cancellation = default)
{
    private readonly List<(string Sql, object? Args, bool ReturnsRows)> _statements = [];

    public int Count => _statements.Count;

    /// <summary>
    /// After a <see cref="RunAsync"/> that threw a database error, the index of the caller's statement
    /// that raised it (on PostgreSQL as Npgsql names it; the statements after it did not run), or
    /// null when none is named or the error came from the statements that went ahead (<see cref="Leading"/>).
    /// </summary>
    public int? FailedAt { get; private set; }

    /// <summary>The transaction the statements run in.</summary>
    internal DbTransaction Transaction => transaction;

    /// <summary>
    /// Statements that go ahead of this batch's own in its round trip while they are pending (a
    /// write's claim of its Idempotency-Key, sent with its posting's first statements); null for none.
    /// </summary>
    public ILeadingStatements? Leading { get; init; }

    /// <summary>Adds a statement whose rows are wanted; returns its index for <see cref="BatchResults.Rows"/>.</summary>
    public int Query(string sql, object? args = null) => Add(sql, args, returnsRows: true);

    /// <summary>Adds a statement run for its effect; returns its index for <see cref="BatchResults.Affected"/>.</summary>
    public int Execute(string sql, object? args = null) => Add(sql, args, returnsRows: false);

    private int Add(string sql, object? args, bool returnsRows)
    {
        _statements.Add((dialect.Expand(sql), args, returnsRows));
        return _statements.Count - 1;
    }

    /// <summary>Runs the statements added since the last run; with no token, with the batch's own.</summary>
    public async Task<BatchResults> RunAsync(CancellationToken ct = default)
    {
        if (!ct.CanBeCanceled) ct = cancellation;
        FailedAt = null;
        var leading = Leading is { Pending: true } pending ? pending : null;
        var ahead = 0;
        if (leading is not null)
        {
            // The leading statements go first, ahead of this batch's own, whose indices the caller
            // holds: they are moved back by as many, and given back in place below.
            var own = _statements.ToList();
            _statements.Clear();
            leading.Add(this);
            ahead = _statements.Count;
            _statements.AddRange(own);
        }
        var results = new BatchResults(_statements.Count);
        if (_statements.Count == 0) return results;
        try
        {
            // A write run side by side with the others of its batch sends its statements in the
            // batch's next round, with theirs.
            if (LockStep.Runs(transaction)) await LockStep.SendAsync(transaction, _statements, results, at => FailedAt = at);
            else if (connection.CanCreateBatch) await RunAsBatchAsync(results, ct);
            else await RunOneByOneAsync(results, ct);
        }
        catch (DbException) when (leading is not null && FailedAt is { } failedAt && failedAt >= ahead)
        {
            // The statements that went ahead ran before the error, and are settled all the same: a
            // claim found taken speaks for the request (a replay), not the error its own statements met.
            leading.Settle(results.Slice(0, ahead));
            throw;
        }
        finally
        {
            _statements.Clear();
            if (FailedAt is { } at) FailedAt = at >= ahead ? at - ahead : null;
        }
        if (leading is null) return results;
        // Settled with what they returned: a claim found taken throws, and the caller's results,
        // which rest on a write that must not be, are not given back.
        leading.Settle(results.Slice(0, ahead));
        return results.Slice(ahead, results.Count - ahead);
    }

    private Task RunAsBatchAsync(BatchResults results, CancellationToken ct) =>
        SendAsBatchAsync(connection, transaction, dialect, _statements, results, at => FailedAt = at, ct);

    /// <summary>
    /// Sends <paramref name="statements"/> as one <see cref="DbBatch"/> in <paramref name="transaction"/>
    /// and fills <paramref name="results"/>; when a statement fails, gives its index to
    /// <paramref name="failedAt"/> (the statements before it completed, and their counts are filled)
    /// and throws. Also the round trip of writes run side by side (<see cref="LockStep"/>).
    /// </summary>
    internal static async Task SendAsBatchAsync(DbConnection connection, DbTransaction transaction, SqlDialect dialect,
        IReadOnlyList<(string Sql, object? Args, bool ReturnsRows)> statements, BatchResults results, Action<int> failedAt, CancellationToken ct)
    {
        await using var batch = connection.CreateBatch();
        batch.Transaction = transaction;
        foreach (var (sql, args, _) in statements)
        {
            var command = batch.CreateBatchCommand();
            command.CommandText = PositionalSql.Bind(dialect, sql, ArgumentsOf(args), command.CreateParameter, command.Parameters)!;
            batch.BatchCommands.Add(command);
        }

        try
        {
            await using var reader = await batch.ExecuteReaderAsync(ct);
            // The reader has one result set per statement that returns rows, in order; statements
            // without rows (an INSERT without RETURNING, an UPDATE) produce none.
            var first = true;
            for (var i = 0; i < statements.Count; i++)
            {
                if (!statements[i].ReturnsRows) continue;
                if (!first) await reader.NextResultAsync(ct);
                first = false;
                results.SetRows(i, await ReadRowsAsync(reader, ct));
            }
        }
        catch (DbException ex) when (ex.BatchCommand is { } failed)
        {
            // The error of a statement without rows may surface only as the reader moves past it or
            // closes; either way the provider names the statement.
            var at = batch.BatchCommands.IndexOf(failed);
            failedAt(at);
            // The statements before it completed: what they wrote is known (RunAsync settles the
            // statements that went ahead with it).
            for (var i = 0; i < at; i++) results.SetAffected(i, batch.BatchCommands[i].RecordsAffected);
            throw;
        }
        for (var i = 0; i < statements.Count; i++)
            results.SetAffected(i, batch.BatchCommands[i].RecordsAffected);
    }

    private async Task RunOneByOneAsync(BatchResults results, CancellationToken ct)
    {
        var prepared = PreparedCommands.Of(connection);
        for (var i = 0; i < _statements.Count; i++)
        {
            var (sql, args, returnsRows) = _statements[i];
            var command = prepared.Rent(sql);
            command.Transaction = transaction;
            Bind(ArgumentsOf(args), command.CreateParameter, command.Parameters, asWritten: true);
            try
            {
                await RunOneAsync(command, results, i, returnsRows, ct);
            }
            catch (DbException)
            {
                FailedAt = i;
                throw;
            }
            finally
            {
                // A kept command must not hold this run's values (an answer's body, a payload) until its next run.
                command.Parameters.Clear();
            }
        }
    }

    private static async Task RunOneAsync(DbCommand command, BatchResults results, int i, bool returnsRows, CancellationToken ct)
    {
        if (returnsRows)
        {
            await using var reader = await command.ExecuteReaderAsync(ct);
            results.SetRows(i, await ReadRowsAsync(reader, ct));
            results.SetAffected(i, reader.RecordsAffected);
        }
        else
        {
            results.SetAffected(i, await command.ExecuteNonQueryAsync(ct));
        }
    }

    private static async Task<List<object?[]>> ReadRowsAsync(DbDataReader reader, CancellationToken ct)
    {
        var rows = new List<object?[]>();
        while (await reader.ReadAsync(ct))
        {
            var row = new object?[reader.FieldCount];
            for (var f = 0; f < row.Length; f++) row[f] = reader.IsDBNull(f) ? null : reader.GetValue(f);
            rows.Add(row);
        }
        return rows;
    }

    /// <summary>
    /// The public properties of each argument type, with a compiled getter each: on the hot path
    /// (every statement of every posting) a getter costs a delegate call, where
    /// <see cref="PropertyInfo.GetValue(object?)"/> goes through reflection's invoker (under the
    /// write mix on SQLite, 7.7% of the writer's samples that <c>perf</c> could attribute).
    /// </summary>
    private static readonly ConcurrentDictionary<Type, (string Name, Func<object, object?> Get, Type Declared)[]> PropertiesByType = new();

    /// <summary>Each argument's name as statements write it (see <see cref="Bind"/>), made once.</summary>
    private static readonly ConcurrentDictionary<string, string> WrittenNames = new(StringComparer.Ordinal);

    /// <summary>
    /// A dictionary argument that may be null, as itself or, when null, as a null of its type: an
    /// object's properties carry their types, a dictionary's entries do not (see <see cref="Bind"/>).
    /// </summary>
    public static object Typed<T>(T value) => value is null ? new NullOf(typeof(T)) : value;

    /// <summary>A null of <paramref name="type"/>, bound as <see cref="Typed{T}"/> binds a null of it.</summary>
    public static object NullFor(Type type) => new NullOf(type);

    /// <summary>A null of a declared type; Dapper binds it as such too (a dictionary it is handed, or <see cref="DynamicParameters"/>).</summary>
    private sealed record NullOf(Type Declared) : SqlMapper.ICustomQueryParameter
    {
        public void AddParameter(IDbCommand command, string name)
        {
            var parameter = command.CreateParameter();
            parameter.ParameterName = name;
            parameter.Value = DBNull.Value;
            if (TypeOfNull(Declared) is { } type) parameter.DbType = type;
            command.Parameters.Add(parameter);
        }
    }

    /// <summary>
    /// A statement's arguments as names and values, as Dapper reads them: a dictionary's entries,
    /// the parameters added by name to Dapper's <see cref="DynamicParameters"/>, or the public
    /// properties of an (anonymous) object. A property's declared type comes with its value, so a
    /// null can be bound with the type its values have (<see cref="Bind"/>).
    /// </summary>
    internal static List<(string Name, object? Value, Type? Declared)> ArgumentsOf(object? args)
    {
        var values = new List<(string, object?, Type?)>();
        switch (args)
        {
            case null:
                break;
            case IEnumerable<KeyValuePair<string, object?>> named:
                foreach (var (name, value) in named)
                    values.Add(value is NullOf typed ? (name, null, typed.Declared) : (name, value, null));
                break;
            case DynamicParameters dynamic:
                var lookup = (SqlMapper.IParameterLookup)dynamic;
                foreach (var name in dynamic.ParameterNames)
                    values.Add(lookup[name] is NullOf typedNull ? (name, null, typedNull.Declared) : (name, lookup[name], null));
                break;
            default:
                foreach (var (name, get, declared) in PropertiesByType.GetOrAdd(args.GetType(), PropertiesOf))
                    values.Add((name, get(args), declared));
                break;
        }
        return values;
    }

    private static (string Name, Func<object, object?> Get, Type Declared)[] PropertiesOf(Type type) =>
    [
        .. type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.GetIndexParameters().Length == 0 && p.GetMethod is not null)
            .Select(p =>
            {
                var instance = Expression.Parameter(typeof(object));
                var body = Expression.Convert(
                    Expression.Property(Expression.Convert(instance, type), p), typeof(object));
                return (p.Name, Expression.Lambda<Func<object, object?>>(body, instance).Compile(), p.PropertyType);
            }),
    ];

    /// <summary>
    /// Binds the named values (<see cref="ArgumentsOf"/>) as parameters. A value's type is left to
    /// the provider to infer, but a null of a declared type is given that type: an untyped null goes
    /// to PostgreSQL as a parameter of unknown type, so a statement whose argument is sometimes null
    /// (a lot without expiry, an event without a till) and sometimes not would not match the
    /// statement Npgsql prepared for the other case, and PostgreSQL would parse and plan it again.
    /// Under the write mix that was half of the events' inserts and a third of the lots' inserts,
    /// with as much time planning as executing (<c>pg_stat_statements</c>).
    /// </summary>
    /// <param name="values">The named values.</param>
    /// <param name="create">Creates a parameter of the command.</param>
    /// <param name="parameters">The command's parameters, which the values join.</param>
    /// <param name="asWritten">
    /// Names each parameter as the statement's text does (<c>@org</c>), where the provider would
    /// otherwise search for the bare name: Microsoft.Data.Sqlite looks a bare name up as it is and
    /// then with each prefix it knows (<c>@</c>, <c>$</c>, <c>:</c>), and SQLite finds a name by
    /// comparing it with each of the statement's parameters in turn, so a bare name cost four such
    /// scans. Under the write mix on SQLite that was 7% of the server's CPU (<c>perf</c>: libc's
    /// <c>strncmp</c> 5.1%, SQLite's <c>sqlite3VListNameToNum</c> 1.0%, the provider's
    /// <c>FindPrefixedParameter</c> 0.8%), nearly all of it on the one writer's thread. Npgsql takes
    /// bare names.
    /// </param>
    /// <param name="positional">Leaves the parameters without names, bound in order (<see cref="PositionalSql"/>).</param>
    internal static void Bind(IEnumerable<(string Name, object? Value, Type? Declared)> values, Func<DbParameter> create, DbParameterCollection parameters,
        bool asWritten = false, bool positional = false)
    {
        foreach (var (name, value, declared) in values)
        {
            var parameter = create();
            if (!positional)
                parameter.ParameterName = asWritten ? WrittenNames.GetOrAdd(name, static n => n[0] is '@' or '$' or ':' ? n : "@" + n) : name;
            parameter.Value = value ?? DBNull.Value;
            if (value is null && declared is not null && TypeOfNull(declared) is { } type) parameter.DbType = type;
            parameters.Add(parameter);
        }
    }

    /// <summary>
    /// The <see cref="DbType"/> that a provider infers from a value of <paramref name="declared"/>
    /// (Npgsql's inference: <c>long</c> is <c>bigint</c>, <c>string</c> is <c>text</c>...), for the types
    /// the ledger binds; null for any other, which stays untyped.
    /// </summary>
    private static DbType? TypeOfNull(Type declared) => NullTypes.GetOrAdd(declared, InferredType);

    /// <summary>Each declared type's <see cref="DbType"/>, found once: <see cref="Nullable.GetUnderlyingType"/> allocates on every call for a generic type.</summary>
    private static readonly ConcurrentDictionary<Type, DbType?> NullTypes = new();

    private static DbType? InferredType(Type declared) => (Nullable.GetUnderlyingType(declared) ?? declared) switch
    {
        var t when t == typeof(long) => DbType.Int64,
        var t when t == typeof(int) => DbType.Int32,
        var t when t == typeof(short) => DbType.Int16,
        var t when t == typeof(bool) => DbType.Boolean,
        var t when t == typeof(double) => DbType.Double,
        var t when t == typeof(decimal) => DbType.Decimal,
        var t when t == typeof(string) => DbType.String,
        var t when t == typeof(byte[]) => DbType.Binary,
        var t when t == typeof(Guid) => DbType.Guid,
        _ => null,
    };
}

/// <summary>What each statement of a <see cref="StatementBatch"/> returned.</summary>
public sealed class BatchResults
{
    private readonly List<object?[]>?[] _rows;
    private readonly int[] _affected;

    internal BatchResults(int count)
    {
        _rows = new List<object?[]>?[count];
        _affected = new int[count];
    }

    /// <summary>How many statements the results are for.</summary>
    public int Count => _affected.Length;

    /// <summary>Takes the results of this many statements of <paramref name="from"/>, from its <paramref name="start"/>.</summary>
    internal void CopyFrom(BatchResults from, int start)
    {
        Array.Copy(from._rows, start, _rows, 0, Count);
        Array.Copy(from._affected, start, _affected, 0, Count);
    }

    /// <summary>The results of <paramref name="count"/> statements from <paramref name="start"/>, numbered from 0.</summary>
    internal BatchResults Slice(int start, int count)
    {
        var slice = new BatchResults(count);
        Array.Copy(_rows, start, slice._rows, 0, count);
        Array.Copy(_affected, start, slice._affected, 0, count);
        return slice;
    }

    internal void SetRows(int index, List<object?[]> rows) => _rows[index] = rows;
    internal void SetAffected(int index, int affected) => _affected[index] = affected;

    public IReadOnlyList<object?[]> Rows(int index) =>
        _rows[index] ?? throw new InvalidOperationException($"Statement {index} of the batch was not added as a query.");

    public int Affected(int index) => _affected[index];

    /// <summary>The first column of the statement's only row, as a 64-bit integer.</summary>
    public long SingleLong(int index) => Convert.ToInt64(Rows(index).Single()[0], System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>
/// Statements sent ahead of the next <see cref="StatementBatch"/> of a transaction that carries them
/// (<see cref="StatementBatch.Leading"/>), once: they cost no round trip of their own.
/// </summary>
public interface ILeadingStatements
{
    /// <summary>True until the statements have been sent.</summary>
    bool Pending { get; }

    /// <summary>Adds the statements to <paramref name="batch"/> (which then sends them); after this they are no longer pending.</summary>
    void Add(StatementBatch batch);

    /// <summary>Takes what the statements returned (numbered from 0 as added); throws when that must stop the transaction's work.</summary>
    void Settle(BatchResults results);
}
