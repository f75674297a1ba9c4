using System.Text.Json;
using Dapper;
using LoyaltyLedger.Storage;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace LoyaltyLedger.Server.Hosting;

/// <summary>
/// Liveness and readiness. <c>/health/live</c> answers while the process serves requests;
/// <c>/health/ready</c> also asks the database, and checks that its schema is at this build's last
/// migration (a server started against a database another build migrated further, or not at all,
/// is not ready). A load balancer sends traffic to ready servers only.
/// </summary>
public static class Health
{
    private const string ReadyTag = "ready";

    public static IServiceCollection AddLedgerHealth(this IServiceCollection services)
    {
        services.AddHealthChecks().AddCheck<LedgerDatabaseHealthCheck>("database", tags: [ReadyTag]);
        return services;
    }

    public static void MapLedgerHealth(this IEndpointRouteBuilder app)
    {
        app.MapHealthChecks("/health/live", new HealthCheckOptions { Predicate = _ => false, ResponseWriter = WriteAsync })
            .AllowAnonymous().DisableRateLimiting();
        foreach (var path in new[] { "/health/ready", "/health" })
        {
            app.MapHealthChecks(path, new HealthCheckOptions { Predicate = c => c.Tags.Contains(ReadyTag), ResponseWriter = WriteAsync })
                .AllowAnonymous().DisableRateLimiting();
        }
    }

    /// <summary><c>{"status":"Healthy","checks":{"database":{"status":"Healthy","description":"..."}}}</c>; 503 unless healthy.</summary>
    private static Task WriteAsync(HttpContext context, HealthReport report)
    {
        context.Response.ContentType = "application/json";
        var body = new
        {
            status = report.Status.ToString(),
            checks = report.Entries.ToDictionary(e => e.Key, e => new { status = e.Value.Status.ToString(), description = e.Value.Description }),
        };
        return context.Response.WriteAsync(JsonSerializer.Serialize(body, JsonSerializerOptions.Web));
    }
}

/// <summary>The database answers, within a bound, and its schema is at this build's migration.</summary>
public sealed class LedgerDatabaseHealthCheck(LedgerDatabase database) : IHealthCheck
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(3);

    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken ct = default)
    {
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(ct);
        bounded.CancelAfter(Timeout);
        var expected = Migrations.All[^1].Version;
        try
        {
            var version = await database.ReadOutOfTurnAsync(c => c.ExecuteScalarAsync<int?>(new CommandDefinition("SELECT MAX(version) FROM schema_migrations", cancellationToken: bounded.Token)), bounded.Token);
            if (version is null) return HealthCheckResult.Unhealthy($"{database.Description}: the schema is not migrated (this build is at migration {expected}).");
            if (version != expected)
                return HealthCheckResult.Unhealthy($"{database.Description}: the schema is at migration {version}, this build at {expected}.");
            return HealthCheckResult.Healthy($"{database.Description}: schema at migration {version}.");
        }
        catch (Exception ex) when (ex is System.Data.Common.DbException or OperationCanceledException or TimeoutException or InvalidOperationException)
        {
            // The reason without the stack: an operator reads this in a load balancer's log.
            var reason = ex is OperationCanceledException ? $"no answer within {Timeout.TotalSeconds:0} s" : ex.Message;
            return HealthCheckResult.Unhealthy($"{database.Description}: the database does not answer ({reason}).");
        }
    }
}
