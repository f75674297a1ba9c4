using System.Data.Common;

namespace LoyaltyLedger.Storage;

/// <summary>
/// Work that must be done in a transaction just before <see cref="LedgerDatabase.WriteAsync{T}"/>
/// commits it: a posting's outbox rows are written this way when its caller has not already added
/// them to a batch of its own, so no posting committed through WriteAsync can commit its ledger
/// change without the events that announce it.
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
}
