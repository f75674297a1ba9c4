using System.Globalization;
using System.Security.Claims;
using System.Threading.RateLimiting;
using LoyaltyLedger.Server.Api;
using Microsoft.AspNetCore.RateLimiting;

namespace LoyaltyLedger.Server.Hosting;

/// <summary>
/// Per-key rate limiting: a token bucket for each API key (configuration
/// <c>Ledger:RateLimit:PermitsPerSecond</c> and <c>Ledger:RateLimit:Burst</c>), and one per client
/// address for calls without valid credentials, so guessing secrets is throttled too. A refused
/// call gets 429 with Retry-After.
/// </summary>
public static class RateLimiting
{
    public const int DefaultPermitsPerSecond = 500;
    public const int DefaultBurst = 1000;

    public static IServiceCollection AddLedgerRateLimiting(this IServiceCollection services, IConfiguration configuration)
    {
        var perSecond = configuration.GetValue("Ledger:RateLimit:PermitsPerSecond", DefaultPermitsPerSecond);
        var burst = configuration.GetValue("Ledger:RateLimit:Burst", Math.Max(DefaultBurst, perSecond));
        if (perSecond <= 0 || burst <= 0) throw new InvalidOperationException("Ledger:RateLimit settings must be positive.");

        return services.AddRateLimiter(options =>
        {
            options.GlobalLimiter = PartitionedRateLimiter.Create<HttpContext, string>(http =>
            {
                var key = http.User.FindFirstValue(CallerClaims.KeyId) is { } keyId
                    ? "key:" + keyId
                    : "addr:" + (http.Connection.RemoteIpAddress?.ToString() ?? "unknown");
                return RateLimitPartition.GetTokenBucketLimiter(key, _ => new TokenBucketRateLimiterOptions
                {
                    TokenLimit = burst,
                    TokensPerPeriod = perSecond,
                    ReplenishmentPeriod = TimeSpan.FromSeconds(1),
                    QueueLimit = 0,
                    AutoReplenishment = true,
                });
            });
            options.OnRejected = async (context, ct) =>
            {
                LoyaltyLedger.Telemetry.LedgerTelemetry.RateLimitRefusals.Add(1);
                var retryAfter = context.Lease.TryGetMetadata(MetadataName.RetryAfter, out var wait) ? Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds)) : 1;
                context.HttpContext.Response.Headers.RetryAfter = retryAfter.ToString(CultureInfo.InvariantCulture);
                await ErrorResponses.WriteAsync(context.HttpContext, ErrorResponses.Problem(429, "rate_limited",
                    $"Too many requests for this key; retry after {retryAfter} s."));
            };
        });
    }
}
