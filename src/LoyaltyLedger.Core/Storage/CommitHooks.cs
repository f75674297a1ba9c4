using System.Data.Common;

namespace LoyaltyLedger.Storage;

/// <summary>
/// Work that must be done in a transaction just before <see cref="LedgerDatabase.WriteAsync{T}"/>
/// commits it: a posting's outbox rows are made this way when its caller has not already added
/// them to a batch of its own, so no posting committed through WriteAsync can commit its ledger
/// change without the events that announce it. And what must be written once, last, for the whole
/// transaction (<see cref="AtTail"/>).
/// </summary>
/// <remarks>
/// The hooks live in a scope that WriteAsync opens around its work (an <see cref="AsyncLocal{T}"/>,
/// so it reaches everything the work awaits and nothing else), not in a table keyed by the
/// transaction: Npgsql reuses its transaction objects from one pooled transaction to the next.
/// </remarks>
public static class CommitHooks
{
    internal sealed class Scope(DbTransaction transaction)
    {
        public DbTransaction Transaction { get; } = transaction;
        public List<Func<CancellationToken, Task>> Hooks { get; } = [];
        public List<(ICommitTail Tail, object Item)> Tail { get; } = [];
        public List<Action> AfterCommit { get; } = [];
    }

    private static readonly AsyncLocal<Scope?> Current = new();

    /// <summary>
    /// Runs <paramref name="hook"/> in <paramref name="transaction"/> right before WriteAsync commits
    /// it (and not if it rolls back). Outside WriteAsync, or for another transaction than the one
    /// WriteAsync is running, nothing is registered: whoever commits such a transaction does the work.
    /// </summary>
    /// <returns>True when the hook will run.</returns>
    public static bool BeforeCommit(DbTransaction transaction, Func<CancellationToken, Task> hook)
    {
        if (Current.Value is not { } scope || !ReferenceEquals(scope.Transaction, transaction)) return false;
        lock (scope.Hooks) scope.Hooks.Add(hook);
        return true;
    }

    /// <summary>Opens the scope of one attempt of WriteAsync; what runs in it may register hooks for <paramref name="transaction"/>.</summary>
    internal static Scope Open(DbTransaction transaction) => Current.Value = new Scope(transaction);

    /// <summary>Runs the scope's hooks, in the order they were registered.</summary>
    internal static async Task RunAsync(Scope scope, CancellationToken ct)
    {
        for (var i = 0; ; i++)
        {
            Func<CancellationToken, Task> hook;
            // A hook may register another (a hook's work that makes a posting): it runs too.
            lock (scope.Hooks)
            {
                if (i >= scope.Hooks.Count) return;
                hook = scope.Hooks[i];
            }
            await hook(ct);
        }
    }

    /// <summary>
    /// Leaves <paramref name="item"/> for <paramref name="tail"/> to write at the very end of
    /// <paramref name="transaction"/>: after every write it holds (all the writes of a group-commit
    /// batch), right before the commit, together with the other items left for the same tail. An item
    /// left by a write that is then rolled back to its savepoint is dropped with it. Outside
    /// WriteAsync, or for another transaction than the one it runs, nothing is left.
    /// </summary>
    /// <returns>True when the tail will write the item; false when the caller must write it itself.</returns>
    public static bool AtTail(DbTransaction transaction, ICommitTail tail, object item)
    {
        if (Current.Value is not { } scope || !ReferenceEquals(scope.Transaction, transaction)) return false;
        lock (scope.Tail) scope.Tail.Add((tail, item));
        return true;
    }

    /// <summary>
    /// Runs <paramref name="publish"/> once <paramref name="transaction"/> has committed, when it is
    /// the transaction of a WriteAsync (and never when it rolls back); otherwise at once. For what a
    /// write's reads put in a process-wide cache: a row the transaction itself created, or saw
    /// created by a write batched with it, is not there for good until the commit (a group-commit
    /// transaction rolled back and run again may give it another id).
    /// </summary>
    public static void AfterCommit(DbTransaction? transaction, Action publish)
    {
        if (transaction is not null && Current.Value is { } scope && ReferenceEquals(scope.Transaction, transaction))
        {
            lock (scope.AfterCommit) scope.AfterCommit.Add(publish);
            return;
        }
        publish();
    }

    /// <summary>Runs what <see cref="AfterCommit"/> left, after the commit: a failure of one is not the write's.</summary>
    internal static void RunAfterCommit(IReadOnlyList<Action> actions)
    {
        foreach (var publish in actions)
        {
            try { publish(); }
            catch (Exception) { /* a cache not filled is read again from the database */ }
        }
    }

    /// <summary>
    /// Writes the items of <paramref name="items"/> (the tails' items of every write the transaction
    /// holds, in the writes' order), each tail once with all of its items, in one round trip: the
    /// tails in the order they first appear, except one that takes a lock until the commit
    /// (<see cref="ICommitTail.HoldsLockUntilCommit"/>), which goes last. <paramref name="first"/>, when
    /// given, goes ahead of them in the same round trip (a group-commit batch lets its end wait for
    /// locks again: the outbox positions' lock is waited for, see <see cref="SqlDialect.LockWaits"/>).
    /// </summary>
    internal static async Task WriteTailAsync(IReadOnlyList<(ICommitTail Tail, object Item)> items, DbConnection connection,
        DbTransaction transaction, SqlDialect dialect, string? first = null)
    {
        if (items.Count == 0) return;
        var batch = new StatementBatch(connection, transaction, dialect);
        AddTail(batch, items, dialect, first);
        await batch.RunAsync(CancellationToken.None);
    }

    /// <summary>
    /// Adds what <see cref="WriteTailAsync"/> writes to <paramref name="batch"/> instead of running it,
    /// for a caller that sends more in the same round trip after it (a group-commit batch's commit).
    /// </summary>
    internal static void AddTail(StatementBatch batch, IReadOnlyList<(ICommitTail Tail, object Item)> items, SqlDialect dialect, string? first = null)
    {
        if (items.Count == 0) return;
        if (first is not null) batch.Execute(first);
        foreach (var tail in items.Select(i => i.Tail).Distinct().OrderBy(t => t.HoldsLockUntilCommit))
            tail.Add(batch, dialect, [.. items.Where(i => i.Tail == tail).Select(i => i.Item)]);
    }
}

/// <summary>
/// What a transaction's writes leave to be written once, at the very end of the transaction
/// (<see cref="CommitHooks.AtTail"/>): the outbox rows, which take their positions there, and what
/// the API stores about each write (its audit record, its idempotent answer), which rides in the
/// same round trip.
/// </summary>
public interface ICommitTail
{
    /// <summary>
    /// Adds the writing of <paramref name="items"/> to <paramref name="batch"/>, which runs in the
    /// transaction right before it commits, with the other tails' statements. It does not commit,
    /// and nothing else is written in the transaction after the batch. The batch runs without a
    /// cancellation token: a group-commit lane's connection is shared by other callers' writes.
    /// </summary>
    void Add(StatementBatch batch, SqlDialect dialect, IReadOnlyList<object> items);

    /// <summary>
    /// True for a tail that takes a lock held until the commit (the outbox positions'): it is
    /// written after the others, so that the lock is held for as little as can be.
    /// </summary>
    bool HoldsLockUntilCommit => false;
}

/// <summary>
/// A row nothing reads before the commit (an audit record, a stored answer), written at the very
/// end of its transaction (<see cref="CommitHooks.AtTail"/>) with the rows of every other write the
/// transaction holds, which then cost no round trip of their own. Where the database writes rows
/// from arrays (<see cref="SqlDialect.WritesRowsFromArrays"/>, PostgreSQL) the rows of one
/// organization in a group-commit batch are one statement, <paramref name="allRows"/>, whose
/// arguments are the organization and arrays, one per column in <paramref name="columns"/>: the same
/// text, and the same prepared statement, for any number of rows. Each statement names its
/// organization, as every statement on an organization's rows does (<c>OrganizationScopeTests</c>).
/// Elsewhere, and for a single row, each row is <paramref name="oneRow"/>.
/// </summary>
/// <param name="oneRow">The statement of one row, its arguments named <paramref name="organization"/> and as <paramref name="columns"/>.</param>
/// <param name="allRows">The statement of an organization's rows: <paramref name="organization"/> one value, each of <paramref name="columns"/> an array of the rows' values in order.</param>
/// <param name="organization">The name of the organization's argument.</param>
/// <param name="columns">The other arguments' names and their values' types (a nullable value's: <c>long?</c>, <c>string</c>).</param>
public sealed class RowsAtEnd(string oneRow, string allRows, string organization, IReadOnlyList<(string Name, Type Type)> columns) : ICommitTail
{
    private sealed record Row(long OrgId, object?[] Values);

    /// <summary>
    /// Adds a row of <paramref name="orgId"/>, its values in the order of the columns, to
    /// <paramref name="batch"/>; inside WriteAsync for the batch's transaction it is left for the end
    /// of the transaction instead.
    /// </summary>
    public void Add(StatementBatch batch, long orgId, params object?[] values)
    {
        if (values.Length != columns.Count) throw new ArgumentException($"A row of {columns.Count} values was given {values.Length}.", nameof(values));
        var row = new Row(orgId, values);
        if (!CommitHooks.AtTail(batch.Transaction, this, row)) batch.Execute(oneRow, OneRowArgs(row));
    }

    void ICommitTail.Add(StatementBatch batch, SqlDialect dialect, IReadOnlyList<object> items)
    {
        foreach (var rows in items.Cast<Row>().GroupBy(r => r.OrgId))
        {
            var count = rows.Count();
            if (count == 1 || !dialect.WritesRowsFromArrays)
            {
                foreach (var row in rows) batch.Execute(oneRow, OneRowArgs(row));
                continue;
            }
            var args = new Dictionary<string, object?>(columns.Count + 1) { [organization] = rows.Key };
            for (var c = 0; c < columns.Count; c++)
            {
                var values = Array.CreateInstance(columns[c].Type, count);
                var i = 0;
                foreach (var row in rows) values.SetValue(row.Values[c], i++);
                args[columns[c].Name] = values;
            }
            batch.Execute(allRows, args);
        }
    }

    private Dictionary<string, object?> OneRowArgs(Row row)
    {
        var args = new Dictionary<string, object?>(columns.Count + 1) { [organization] = row.OrgId };
        // A null goes with its column's type, so that the statement stays the one prepared for values.
        for (var c = 0; c < columns.Count; c++) args[columns[c].Name] = row.Values[c] ?? StatementBatch.NullFor(columns[c].Type);
        return args;
    }
}
