using System.Diagnostics;
using LoyaltyLedger.Telemetry;

namespace LoyaltyLedger.Storage;

/// <summary>
/// How many reads run on PostgreSQL's primary at once (<c>Ledger:Postgres:ReadSlots</c>); the others
/// wait their turn in the order they came.
/// </summary>
/// <remarks>
/// <para>Why: a page read is a few hundred microseconds of the database's CPU. With every one of 32
/// concurrent reads on a backend of its own, 32 backends are runnable on a few cores, and the
/// operating system's scheduler, not arrival order, decides who finishes when. On this project's
/// 2-core machine, at 32 clients, 8 slots gave the vault page 1.14x to 1.62x the requests/s of every
/// read on its own connection, the points-ledger pages 0.97x to 1.45x, and a lower p99
/// (docs/performance.md, "Read slots on PostgreSQL"). A queue in the process is first come, first served.</para>
/// <para>No deadlock: a read that already holds a slot (a read inside a read) takes none, and nothing
/// a write does takes one (<see cref="Exempt"/>: a write's lookups, in a group-commit lane or not),
/// so a read holding a slot may wait for a write, but no write ever waits for a slot.</para>
/// <para>Reads out of turn take none either (<see cref="LedgerDatabase.ReadOutOfTurnAsync{T}"/>: the
/// health probe, which measures the database and not the queue, and the console's key ring, which
/// the framework reads synchronously). Streaming reads (exports) take none: they hold their
/// connection for minutes.</para>
/// <para>The mark is per flow, not per database: a read inside a read of another
/// <see cref="LedgerDatabase"/> (tests open several on one server) takes no slot of that one either.</para>
/// </remarks>
internal sealed class ReadSlots(int slots)
{
    private readonly SemaphoreSlim _free = new(slots, slots);

    /// <summary>Set in the flow of a read that holds a slot, of every write, and of a read out of turn: reads in it take none.</summary>
    private static readonly AsyncLocal<bool> Exempted = new();

    /// <summary>How many reads run at once.</summary>
    public int Slots { get; } = slots;

    /// <summary>
    /// Marks the caller's flow, from here to the end of the async method that called this, as one
    /// whose reads take no slot. Call it from an async method: this method is synchronous so that
    /// the mark is the caller's (an async method's changes to its flow end when it returns).
    /// </summary>
    public static void Exempt() => Exempted.Value = true;

    /// <summary>True when a read in this flow must take a slot.</summary>
    public static bool TakesSlot => !Exempted.Value;

    /// <summary>Waits for a slot (first come, first served); the wait is counted in <c>ledger.postgres.read.wait</c>.</summary>
    public async Task EnterAsync(CancellationToken ct)
    {
        if (_free.Wait(0, CancellationToken.None)) return;
        var started = Stopwatch.GetTimestamp();
        try
        {
            await _free.WaitAsync(ct);
        }
        finally
        {
            LedgerTelemetry.PostgresReadWait.Add(Stopwatch.GetElapsedTime(started).TotalSeconds);
        }
    }

    /// <summary>Gives back the slot <see cref="EnterAsync"/> took; the first read waiting gets it.</summary>
    public void Leave() => _free.Release();
}
