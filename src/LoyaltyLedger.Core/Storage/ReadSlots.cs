using LoyaltyLedger.Telemetry;

namespace LoyaltyLedger.Storage;

/// <summary>
/// How many reads run on PostgreSQL's primary at once (<c>Ledger:Postgres:ReadSlots</c>); the others
/// wait their turn in the order they came.
/// </summary>
/// <remarks>
/// <para>Why: a read is a few hundred microseconds of the database's CPU. With 32 at once, 32
/// backends are runnable on a few cores, and the operating system's scheduler decides who finishes
/// when: on this project's 2-core machine a page read at 32 clients did 2,900-3,000 requests/s with a
/// p99 of 24-33 ms with every read on its own connection, and 3,600-4,600 with p99 15-23 ms with 4 or
/// 8 at once (docs/performance.md). A queue in the process is first come, first served.</para>
/// <para>No deadlock: a read that already holds a slot (a read inside a read) takes none, and nothing
/// a write does takes one (<see cref="Exempt"/>: a write's lookups, in a group-commit lane or not),
/// so a read holding a slot may wait for a write, but no write ever waits for a slot.</para>
/// <para>Streaming reads (exports) do not take one: they hold their connection for minutes.</para>
/// </remarks>
internal sealed class ReadSlots(int slots)
{
    /// <summary>How many reads run at once.</summary>
    public int Slots { get; } = slots;

    private readonly SemaphoreSlim _free = new(slots, slots);

    /// <summary>Set in the flow of a read that holds a slot, and of every write: reads in it take none.</summary>
    private static readonly AsyncLocal<bool> Holding = new();

    /// <summary>
    /// Marks the caller's flow, from here to the end of the async method that called this, as one
    /// whose reads take no slot. A synchronous method: the mark is the caller's, not this method's.
    /// </summary>
    public static void Exempt() => Holding.Value = true;

    /// <summary>True when a read in this flow must take a slot.</summary>
    public static bool Needed => !Holding.Value;

    /// <summary>Waits for a slot (first come, first served); the wait is counted in <c>ledger.postgres.read.wait</c>.</summary>
    public async Task EnterAsync(CancellationToken ct)
    {
        if (_free.Wait(0, CancellationToken.None)) return;
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            await _free.WaitAsync(ct);
        }
        finally
        {
            LedgerTelemetry.PostgresReadWait.Add(System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds);
        }
    }

    public void Leave() => _free.Release();
}
