using System.Globalization;
using System.Security.Claims;
using System.Threading.RateLimiting;
using LoyaltyLedger.Server.Api;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.Extensions.Options;

namespace LoyaltyLedger.Server.Hosting;

/// <summary>
/// Per-key rate limiting: a token bucket for each API key (<see cref="RateLimitSettings"/>), and one per client
/// address for calls without valid credentials, so guessing secrets is throttled too. A refused
/// call gets 429 with Retry-After.
/// </summary>
public static class RateLimiting
{
    public static IServiceCollection AddLedgerRateLimiting(this IServiceCollection services)
    {
        services.AddOptions<RateLimiterOptions>().Configure<IOptions<RateLimitSettings>>((options, settings) =>
        {
            var perSecond = settings.Value.PermitsPerSecond;
            var burst = settings.Value.EffectiveBurst;
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
        return services.AddRateLimiter(_ => { });
    }
}
