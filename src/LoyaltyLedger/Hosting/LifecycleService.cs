using Microsoft.Extensions.Options;
using LoyaltyLedger.Lifecycle;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tiers;

namespace LoyaltyLedger.Server.Hosting;

/// <summary>
/// Runs the lifecycle (promised-points conversion, expiry, the points.expiring notices, then the tier
/// evaluation of owners whose period ended) for every organization on an
/// interval, <c>Ledger:ExpiryInterval</c> (a TimeSpan, default 5 minutes; zero or negative turns
/// it off, e.g. when an external scheduler runs the <c>expire</c> command instead). Time comes from
/// the injected <see cref="TimeProvider"/>, so a test clock decides what is due.
/// </summary>
public sealed class LifecycleService(LedgerDatabase database, TimeProvider clock, IOptions<LifecycleSettings> settings, ILogger<LifecycleService> logger)
    : BackgroundService
{
    public const string IntervalKey = "Ledger:ExpiryInterval";

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var interval = settings.Value.ExpiryInterval;
        if (interval <= TimeSpan.Zero) return;
        using var timer = new PeriodicTimer(interval, clock);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            try
            {
                var now = clock.GetUtcNow();
                var result = await LifecycleRun.RunAsync(database, null, now, now, "lifecycle-service", stoppingToken);
                if (result.Conversions + result.Expiries + result.ExpiryNotices > 0)
                    logger.LogInformation("Lifecycle run: {Conversions} promised lots converted, {Expiries} wallets expired, {Notices} expiry notices sent",
                        result.Conversions, result.Expiries, result.ExpiryNotices);
                // Then the tiers whose period ended: decided at the end of the period, never before.
                var tiers = await TierEvaluation.RunAsync(database, null, now, now, "lifecycle-service", stoppingToken);
                if (tiers.Evaluated > 0)
                    logger.LogInformation("Tier evaluation {RunId}: {Evaluated} owners evaluated, {Renewed} renewed, {Downgraded} downgraded, {Upgraded} upgraded",
                        tiers.RunId, tiers.Evaluated, tiers.Renewed, tiers.Downgraded, tiers.Upgraded);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // One failed run (a database restart, say) must not stop the service: the next tick retries,
                // and the run is idempotent.
                logger.LogError(ex, "Lifecycle run failed");
            }
        }
    }
}

public static class LifecycleServiceRegistration
{
    public static IServiceCollection AddLedgerLifecycle(this IServiceCollection services) =>
        services.AddHostedService<LifecycleService>();
}
