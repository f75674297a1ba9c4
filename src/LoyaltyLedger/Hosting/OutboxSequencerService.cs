using Microsoft.Extensions.Options;
using LoyaltyLedger.Outbox;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Server.Hosting;

/// <summary>
/// Runs <see cref="OutboxSequencer"/> in the background every <c>Ledger:Outbox:SequencerInterval</c>
/// (default 100 ms), for the rows that wait without a position: a write of this version numbers its
/// own rows at its commit, so these are the rows of a server of an earlier version (during a rolling
/// upgrade, or committed before the upgrade). Time comes from the injected <see cref="TimeProvider"/>.
/// </summary>
public sealed class OutboxSequencerService(LedgerDatabase database, TimeProvider clock, IOptions<OutboxSettings> settings,
    ILogger<OutboxSequencerService> logger) : BackgroundService
{
    public const string IntervalKey = "Ledger:Outbox:SequencerInterval";

    /// <summary>After a failed run (the database restarting, say), the next waits this long at least.</summary>
    private static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var interval = settings.Value.SequencerInterval;
        if (interval <= TimeSpan.Zero) return;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                // Each run first reads the waiting rows' partial index, which is empty when none wait.
                await OutboxSequencer.RunAllAsync(database, stoppingToken);
                await Task.Delay(interval, clock, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                // Rows wait with no position until a run succeeds; nothing is lost meanwhile.
                logger.LogWarning(ex, "Outbox sequencer run failed; retrying");
                try { await Task.Delay(RetryDelay, clock, stoppingToken); }
                catch (OperationCanceledException) { return; }
            }
        }
    }
}

public static class OutboxSequencerRegistration
{
    public static IServiceCollection AddOutboxSequencer(this IServiceCollection services) =>
        services.AddHostedService<OutboxSequencerService>();
}
