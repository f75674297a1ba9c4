using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Tests.Infrastructure;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Trace;

namespace LoyaltyLedger.Tests.Server;

/// <summary>
/// Traces are recorded only when they have somewhere to go: without an OTLP endpoint no tracer
/// provider listens, so no request, posting or database command builds a span for nobody.
/// </summary>
public sealed class TracingTests(SqliteDatabase db) : IClassFixture<SqliteDatabase>
{
    private async Task<bool> HasTracerAsync(string? otlpEndpoint)
    {
        await using var database = db.OpenSecondInstance();
        await using var app = LedgerServer.Build(new LedgerServerOptions
        {
            Database = database,
            Configure = builder =>
            {
                builder.WebHost.UseTestServer();
                builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
                {
                    ["Ledger:ExpiryInterval"] = "0",
                    ["Ledger:Telemetry:OtlpEndpoint"] = otlpEndpoint,
                    ["OTEL_EXPORTER_OTLP_ENDPOINT"] = null,
                });
            },
        });
        return app.Services.GetService<TracerProvider>() is not null;
    }

    [Fact]
    public async Task spans_are_recorded_only_when_an_otlp_endpoint_is_set()
    {
        (await HasTracerAsync(null)).ShouldBeFalse();
        (await HasTracerAsync("http://127.0.0.1:4317")).ShouldBeTrue();
    }
}
