using System.Data.Common;
using Microsoft.Data.Sqlite;
using Npgsql;
using NpgsqlTypes;

namespace LoyaltyLedger.Storage;

/// <summary>The storage type of a bulk-loaded column; PostgreSQL's binary COPY needs the exact one.</summary>
public enum BulkType { Bigint, Integer, Smallint, Text }

/// <summary>A table and the columns a bulk load fills, in the order values are written.</summary>
public sealed record BulkTable(string Name, IReadOnlyList<(string Column, BulkType Type)> Columns);

/// <summary>
/// Writes rows of one table, value by value in column order: <see cref="Start"/>, one call per
/// column, then <see cref="End"/>. Synchronous on purpose: a bulk load is one producer streaming
/// millions of small values, and a task per value would cost more than the value.
/// </summary>
public abstract class BulkRowWriter
{
    protected BulkRowWriter(BulkTable table) => Table = table;

    public BulkTable Table { get; }
    public long Rows { get; private set; }

    public abstract void Start();
    public abstract void Long(long value);
    public abstract void Long(long? value);
    public abstract void Text(string? value);

    public virtual void End() => Rows++;
}

/// <summary>
/// Streams rows into several tables at once. PostgreSQL: one binary COPY per table, each on its own
/// connection (a connection carries one COPY at a time). SQLite: one connection, one transaction and
/// one prepared INSERT per table, reused for every row.
/// </summary>
public abstract class BulkLoad : IAsyncDisposable
{
    private readonly Dictionary<string, BulkRowWriter> _writers = [];

    public BulkRowWriter this[string table] => _writers[table];

    public long TotalRows => _writers.Values.Sum(w => w.Rows);

    protected void Add(BulkRowWriter writer) => _writers.Add(writer.Table.Name, writer);

    protected IEnumerable<BulkRowWriter> Writers => _writers.Values;

    /// <summary>Makes every written row durable; before this, nothing of the load is visible.</summary>
    public abstract Task CompleteAsync(CancellationToken ct);

    public abstract ValueTask DisposeAsync();

    internal static async Task<BulkLoad> OpenPostgresAsync(Func<CancellationToken, Task<DbConnection>> open, IReadOnlyList<BulkTable> tables, CancellationToken ct)
    {
        var load = new PostgresBulkLoad();
        try
        {
            foreach (var table in tables)
            {
                var connection = (NpgsqlConnection)await open(ct);
                var columns = string.Join(", ", table.Columns.Select(c => c.Column));
                var importer = await connection.BeginBinaryImportAsync($"COPY {table.Name} ({columns}) FROM STDIN (FORMAT BINARY)", ct);
                load.Attach(new PostgresRowWriter(table, connection, importer));
            }
            return load;
        }
        catch
        {
            await load.DisposeAsync();
            throw;
        }
    }

    internal static async Task<BulkLoad> OpenSqliteAsync(Func<CancellationToken, Task<DbConnection>> open, IReadOnlyList<BulkTable> tables, CancellationToken ct)
    {
        var connection = (SqliteConnection)await open(ct);
        // NORMAL under WAL still never corrupts the file (a crash loses at most the unfinished
        // load, which is one transaction), and it spares one fsync per WAL write; a large page cache
        // keeps the indexes being filled in memory. Both are restored before the connection returns
        // to the pool.
        SqliteTransaction transaction;
        try
        {
            using (var pragma = connection.CreateCommand())
            {
                pragma.CommandText = "PRAGMA synchronous=NORMAL; PRAGMA cache_size=-524288; PRAGMA temp_store=MEMORY;";
                pragma.ExecuteNonQuery();
            }
            transaction = connection.BeginTransaction(deferred: false);
        }
        catch
        {
            // Set up halfway: the connection never goes back to the pool with the load's settings.
            SqliteConnection.ClearPool(connection);
            await connection.DisposeAsync();
            throw;
        }
        var load = new SqliteBulkLoad(connection, transaction);
        foreach (var table in tables)
            load.Attach(new SqliteRowWriter(table, connection));
        return load;
    }

    private sealed class PostgresBulkLoad : BulkLoad
    {
        public void Attach(PostgresRowWriter writer) => Add(writer);

        public override async Task CompleteAsync(CancellationToken ct)
        {
            foreach (var writer in Writers.Cast<PostgresRowWriter>())
                await writer.Importer.CompleteAsync(ct);
        }

        public override async ValueTask DisposeAsync()
        {
            // An importer disposed without CompleteAsync cancels its COPY: nothing of it is kept.
            foreach (var writer in Writers.Cast<PostgresRowWriter>())
            {
                await writer.Importer.DisposeAsync();
                await writer.Connection.DisposeAsync();
            }
        }
    }

    private sealed class PostgresRowWriter(BulkTable table, NpgsqlConnection connection, NpgsqlBinaryImporter importer) : BulkRowWriter(table)
    {
        private int _column;

        public NpgsqlConnection Connection { get; } = connection;
        public NpgsqlBinaryImporter Importer { get; } = importer;

        public override void Start()
        {
            _column = 0;
            Importer.StartRow();
        }

        public override void Long(long value)
        {
            switch (Table.Columns[_column++].Type)
            {
                case BulkType.Smallint: Importer.Write(checked((short)value), NpgsqlDbType.Smallint); break;
                case BulkType.Integer: Importer.Write(checked((int)value), NpgsqlDbType.Integer); break;
                default: Importer.Write(value, NpgsqlDbType.Bigint); break;
            }
        }

        public override void Long(long? value)
        {
            if (value is { } v) Long(v);
            else { _column++; Importer.WriteNull(); }
        }

        public override void Text(string? value)
        {
            _column++;
            if (value is null) Importer.WriteNull();
            else Importer.Write(value, NpgsqlDbType.Text);
        }
    }

    private sealed class SqliteBulkLoad(SqliteConnection connection, SqliteTransaction transaction) : BulkLoad
    {
        private bool _done;

        public void Attach(SqliteRowWriter writer) => Add(writer);

        public override Task CompleteAsync(CancellationToken ct)
        {
            foreach (var writer in Writers.Cast<SqliteRowWriter>()) writer.Flush();
            transaction.Commit();
            _done = true;
            return Task.CompletedTask;
        }

        public override async ValueTask DisposeAsync()
        {
            try
            {
                foreach (var writer in Writers.Cast<SqliteRowWriter>()) writer.Dispose();
                if (!_done) transaction.Rollback();
                transaction.Dispose();
                using var pragma = connection.CreateCommand();
                pragma.CommandText = "PRAGMA synchronous=FULL; PRAGMA cache_size=-2000; PRAGMA temp_store=DEFAULT;";
                pragma.ExecuteNonQuery();
            }
            catch (Exception)
            {
                // Not restored (or not rolled back): the connection must not go back to the pool,
                // where a later write would get synchronous=NORMAL (ClearPool closes it as it is
                // returned). The load's own error, if any, is the one its caller sees.
                SqliteConnection.ClearPool(connection);
            }
            finally
            {
                await connection.DisposeAsync();
            }
        }
    }

    /// <summary>
    /// One prepared statement per table, bound and stepped through SQLite's C API: the ADO.NET command
    /// costs a boxed value per parameter and a data reader per row, which at tens of millions of rows
    /// is most of the load's time. The statement inserts <see cref="RowsPerStatement"/> rows at once:
    /// each execution opens a cursor on the table and on every one of its indexes and closes them
    /// again, which a statement per row pays on every row. It is INSERT OR FAIL: a plain (OR ABORT)
    /// statement that writes several rows keeps a statement journal, a copy of every page it
    /// touches, so it can undo its own rows on a constraint error; here any error already discards
    /// the whole load, which is one transaction, so that copy would be pure cost.
    /// </summary>
    private sealed class SqliteRowWriter : BulkRowWriter
    {
        /// <summary>Rows per INSERT; times the widest table's columns, far below SQLite's 32,766 parameters.</summary>
        private const int RowsPerStatement = 32;

        private readonly SQLitePCL.sqlite3 _db;
        private readonly SQLitePCL.sqlite3_stmt _statement;
        private readonly int _columns;
        // The values of the rows not yet inserted, bound only when a statement's worth is there, so
        // the rows left at the end can go into a statement of their own size.
        private readonly long[] _longs;
        private readonly string?[] _texts;
        private readonly byte[] _kinds;
        private int _values;

        private const byte LongValue = 0, NullValue = 1, TextValue = 2;

        /// <remarks>The statements run on the connection's own handle, inside the transaction it began.</remarks>
        public SqliteRowWriter(BulkTable table, SqliteConnection connection) : base(table)
        {
            _db = connection.Handle!;
            _columns = table.Columns.Count;
            (_longs, _texts, _kinds) = (new long[RowsPerStatement * _columns], new string?[RowsPerStatement * _columns], new byte[RowsPerStatement * _columns]);
            _statement = Prepare(RowsPerStatement);
        }

        public void Dispose() => _statement.Dispose();

        public override void Start() { }

        public override void Long(long value)
        {
            _kinds[_values] = LongValue;
            _longs[_values++] = value;
        }

        public override void Long(long? value)
        {
            if (value is { } v) Long(v);
            else _kinds[_values++] = NullValue;
        }

        public override void Text(string? value)
        {
            _kinds[_values] = value is null ? NullValue : TextValue;
            _texts[_values++] = value;
        }

        public override void End()
        {
            base.End();
            if (_values == _longs.Length) Insert(_statement);
        }

        /// <summary>Inserts the rows still held, in a statement sized for them.</summary>
        public void Flush()
        {
            if (_values == 0) return;
            using var tail = Prepare(_values / _columns);
            Insert(tail);
        }

        private SQLitePCL.sqlite3_stmt Prepare(int rows)
        {
            var columns = string.Join(", ", Table.Columns.Select(c => c.Column));
            var row = "(" + string.Join(", ", Table.Columns.Select(_ => "?")) + ")";
            Check(SQLitePCL.raw.sqlite3_prepare_v2(_db, $"INSERT OR FAIL INTO {Table.Name} ({columns}) VALUES {string.Join(", ", Enumerable.Repeat(row, rows))}", out var statement));
            return statement;
        }

        private void Insert(SQLitePCL.sqlite3_stmt statement)
        {
            for (var i = 0; i < _values; i++)
            {
                Check(_kinds[i] switch
                {
                    LongValue => SQLitePCL.raw.sqlite3_bind_int64(statement, i + 1, _longs[i]),
                    TextValue => SQLitePCL.raw.sqlite3_bind_text(statement, i + 1, _texts[i]),
                    _ => SQLitePCL.raw.sqlite3_bind_null(statement, i + 1),
                });
            }
            var result = SQLitePCL.raw.sqlite3_step(statement);
            SQLitePCL.raw.sqlite3_reset(statement);
            if (result != SQLitePCL.raw.SQLITE_DONE) Check(result);
            Array.Clear(_texts, 0, _values);
            _values = 0;
        }

        private void Check(int result)
        {
            if (result is not (SQLitePCL.raw.SQLITE_OK or SQLitePCL.raw.SQLITE_DONE))
                throw new SqliteException($"{Table.Name}: {SQLitePCL.raw.sqlite3_errmsg(_db).utf8_to_string()}", result);
        }
    }
}
