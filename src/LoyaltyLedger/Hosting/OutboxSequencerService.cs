using Microsoft.Extensions.Options;
using LoyaltyLedger.Outbox;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Server.Hosting;

/// <summary>
/// Runs <see cref="OutboxSequencer"/> in the background: right after each write this process commits
/// (<see cref="LedgerDatabase.Commits"/>), and every <c>Ledger:Outbox:SequencerInterval</c> (default
/// 100 ms) for what other server processes commit. Time comes from the injected
/// <see cref="TimeProvider"/>.
/// </summary>
public sealed class OutboxSequencerService(LedgerDatabase database, TimeProvider clock, IOptions<OutboxSettings> settings,
    ILogger<OutboxSequencerService> logger) : BackgroundService
{
    public const string IntervalKey = "Ledger:Outbox:SequencerInterval";

    /// <summary>
    /// The least time between two runs: under a stream of commits the rows of many postings are
    /// numbered together, at most forty runs a second (each a small transaction of its own, with its
    /// own commit to flush), rather than one run per commit.
    /// </summary>
    private static readonly TimeSpan MinimumSpacing = TimeSpan.FromMilliseconds(25);

    /// <summary>After a failed run (the database restarting, say), the next waits this long at least.</summary>
    private static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var interval = settings.Value.SequencerInterval;
        if (interval <= TimeSpan.Zero) return;
        var numbered = 0;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                // Woken by a commit of this process while postings stream in (the last run numbered
                // rows), rows are waiting: the run skips its probe. Not after a run that found none:
                // its own commit wakes the next run too, and an idle server would then write a
                // transaction every few milliseconds instead of reading one index page.
                var committed = await database.Commits.WaitAsync(interval, clock, stoppingToken);
                numbered = await OutboxSequencer.RunAllAsync(database, stoppingToken, rowsWaiting: committed && numbered > 0);
                await Task.Delay(MinimumSpacing, clock, stoppingToken);
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
