namespace LoyaltyLedger.Storage;

/// <summary>
/// Wakes a background worker when a write has committed in this process (the outbox sequencer
/// numbers what a posting just wrote at once rather than on its next tick). Pulses that come while
/// nobody waits are kept as one, so a burst of commits wakes the worker once.
/// </summary>
public sealed class CommitSignal
{
    private readonly SemaphoreSlim _pulse = new(0, 1);

    /// <summary>Notes that a write committed.</summary>
    public void Pulse()
    {
        // Already pulsed and not yet taken: one pulse stands for them all.
        try { _pulse.Release(); }
        catch (SemaphoreFullException) { }
    }

    /// <summary>Waits for a pulse (taking it), or until <paramref name="timeout"/> passes by <paramref name="clock"/>; true on a pulse.</summary>
    public async Task<bool> WaitAsync(TimeSpan timeout, TimeProvider clock, CancellationToken ct)
    {
        if (_pulse.Wait(0, CancellationToken.None)) return true;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var pulsed = _pulse.WaitAsync(stop.Token);
        var elapsed = Task.Delay(timeout, clock, stop.Token);
        var first = await Task.WhenAny(pulsed, elapsed);
        await stop.CancelAsync();
        ct.ThrowIfCancellationRequested();
        // The wait may have taken the pulse just as the delay ran out: then it counts.
        return first == pulsed || pulsed.IsCompletedSuccessfully;
    }
}
