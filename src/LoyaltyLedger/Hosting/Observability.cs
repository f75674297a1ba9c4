using LoyaltyLedger.Telemetry;
using Microsoft.Extensions.Logging.Console;
using Npgsql;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;

namespace LoyaltyLedger.Server.Hosting;

/// <summary>
/// Metrics, traces and logs. Metrics are exported at <c>/metrics</c> in Prometheus' text format:
/// ASP.NET Core's request duration by route and status, the ledger's own instruments
/// (<see cref="LedgerTelemetry"/>), Npgsql's connection pool and command metrics, and the .NET
/// runtime's. Traces (ASP.NET Core, the ledger's postings and reads, Npgsql's commands) go out over
/// OTLP when <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> (or <c>Ledger:Telemetry:OtlpEndpoint</c>) is set.
/// Log lines carry the request's trace and span ids; <c>Logging:Console:FormatterName=json</c>
/// writes them as JSON.
/// </summary>
public static class Observability
{
    public const string MetricsPath = "/metrics";

    public static void AddLedgerObservability(this WebApplicationBuilder builder)
    {
        // A refused credential is an answer, not news: the authentication handler's per-request lines
        // ("was not authenticated", "was challenged") stay below Information unless the operator asks.
        if (builder.Configuration[$"Logging:LogLevel:{typeof(BasicAuthenticationHandler).FullName}"] is null)
            builder.Logging.AddFilter(typeof(BasicAuthenticationHandler).FullName, LogLevel.Warning);
        builder.Logging.Configure(o => o.ActivityTrackingOptions = ActivityTrackingOptions.TraceId | ActivityTrackingOptions.SpanId);
        // Scopes carry the trace id into each line, in both formatters.
        builder.Services.Configure<JsonConsoleFormatterOptions>(o => o.IncludeScopes = true);
        builder.Services.Configure<SimpleConsoleFormatterOptions>(o => o.IncludeScopes = true);

        var otlp = builder.Configuration[$"{TelemetrySettings.Section}:{nameof(TelemetrySettings.OtlpEndpoint)}"] ?? builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"];
        var telemetry = builder.Services.AddOpenTelemetry()
            .WithMetrics(metrics => metrics
                .AddAspNetCoreInstrumentation()
                .AddMeter(LedgerTelemetry.Name, "Npgsql", "System.Runtime")
                // A scrape reads the current values: Prometheus already paces its scrapes.
                .AddPrometheusExporter(o => o.ScrapeResponseCacheDurationMilliseconds = 0));
        // Spans are recorded only when they have somewhere to go. A listener makes every request, posting
        // and database command build a span with its tags (the command's SQL text among them), and
        // without an exporter the SDK built them for nobody. Log lines keep their trace and span ids
        // without it: ASP.NET Core starts each request's activity for logging on its own.
        if (!string.IsNullOrWhiteSpace(otlp))
            telemetry.WithTracing(tracing => tracing
                .AddAspNetCoreInstrumentation(o => o.Filter = context => !IsOperational(context.Request.Path))
                .AddSource(LedgerTelemetry.Name)
                .AddNpgsql()
                .AddOtlpExporter(o => o.Endpoint = new Uri(otlp)));
    }

    public static void MapLedgerMetrics(this WebApplication app) =>
        app.MapPrometheusScrapingEndpoint(MetricsPath).AllowAnonymous().DisableRateLimiting();

    /// <summary>Scrapes and probes are not traced: they would drown the requests that matter.</summary>
    private static bool IsOperational(PathString path) =>
        path.StartsWithSegments(MetricsPath) || path.StartsWithSegments("/health");
}
