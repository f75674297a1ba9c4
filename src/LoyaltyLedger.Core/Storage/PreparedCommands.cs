using System.Data.Common;
using System.Runtime.CompilerServices;

namespace LoyaltyLedger.Storage;

/// <summary>
/// The commands a connection has run, kept by their SQL so that the next run of the same text reuses
/// the statement the database already compiled. On SQLite every new command compiles its SQL again
/// (<c>sqlite3_prepare</c>: parse, plan, generate code), and a posting is two dozen short statements
/// that group commit's one writer connection runs over and over: compiling was a large share of what
/// that writer, which every write of the process waits for, spends on a posting. A reused command is
/// only rebound and reset. (On PostgreSQL a batch goes as one <see cref="DbBatch"/> and Npgsql
/// prepares statements itself, so this is not used there.)
/// </summary>
/// <remarks>
/// Kept per connection object and dropped with it; a connection runs one statement at a time, so
/// a command is never used twice at once. At most <see cref="MaxPerConnection"/> texts are kept:
/// some statements carry their values in their text (a list of ids), so when the set is full it is
/// dropped and filled again, and the statements that run all the time are soon kept again.
/// </remarks>
internal sealed class PreparedCommands
{
    private const int MaxPerConnection = 256;

    private static readonly ConditionalWeakTable<DbConnection, PreparedCommands> ByConnection = new();

    private readonly DbConnection _connection;
    private readonly Dictionary<string, DbCommand> _commands = new(StringComparer.Ordinal);

    private PreparedCommands(DbConnection connection) => _connection = connection;

    public static PreparedCommands Of(DbConnection connection) => ByConnection.GetValue(connection, c => new PreparedCommands(c));

    /// <summary>A command for <paramref name="sql"/>, kept for the next run of the same text: the caller must not dispose it.</summary>
    public DbCommand Rent(string sql)
    {
        if (_commands.TryGetValue(sql, out var kept)) return kept;
        if (_commands.Count >= MaxPerConnection)
        {
            foreach (var old in _commands.Values) old.Dispose();
            _commands.Clear();
        }
        var command = _connection.CreateCommand();
        command.CommandText = sql;
        _commands[sql] = command;
        return command;
    }
}
