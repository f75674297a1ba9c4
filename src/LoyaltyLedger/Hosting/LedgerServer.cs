using System.Text.Json.Serialization;
using LoyaltyLedger.Server.Api;
using LoyaltyLedger.Server.SupportConsole;
using LoyaltyLedger.Storage;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Http.Json;
using Scalar.AspNetCore;

namespace LoyaltyLedger.Server.Hosting;

/// <summary>How a server instance is put together; tests pass their own database and clock.</summary>
public sealed class LedgerServerOptions
{
    public required LedgerDatabase Database { get; init; }
    public TimeProvider Clock { get; init; } = TimeProvider.System;
    public string[] Args { get; init; } = [];
    /// <summary>Lets a test swap Kestrel for the in-memory test server, or add settings.</summary>
    public Action<WebApplicationBuilder>? Configure { get; init; }
}

public static class LedgerServer
{
    /// <summary>Largest request body accepted (a bulk allocation of 1,000 lines fits easily).</summary>
    public const long MaxRequestBodyBytes = 1_048_576;

    /// <summary>The default authentication scheme: Basic for the APIs, the console's session cookie under /console.</summary>
    public const string RequestScheme = "Ledger";

    public static WebApplication Build(LedgerServerOptions options)
    {
        // Settings are read and checked once, at start, so appsettings.json is not watched for
        // changes. Watching it watches the whole working directory, where the SQLite default keeps
        // ./data: every write to the database and its WAL would wake the watcher, measured at 8% of
        // the server's CPU under writes (docs/performance.md, "The server's threads").
        var builder = WebApplication.CreateSlimBuilder([.. options.Args, "--hostBuilder:reloadConfigOnChange=false"]);
        builder.Configuration.AddLedgerEnvironment();
        // First, so a caller's settings are seen by the registrations below.
        options.Configure?.Invoke(builder);
        if (SettingsRegistration.Check(builder.Configuration, options.Database.Provider) is { Count: > 0 } problems) throw new SettingsException(problems);
        if (builder.Configuration.GetSection(ReadReplicaSettings.Section).Get<ReadReplicaSettings>() is { ReadReplicas.Count: > 0 } replicas)
            options.Database.UseReadReplicas(new ReadReplicaOptions(replicas.ReadReplicas, replicas.ReplicaTokenWait, replicas.ReplicaMaxLag));
        if (options.Database.Provider == DatabaseProvider.Postgres)
        {
            var postgres = builder.Configuration.GetSection(PostgresSettings.Section).Get<PostgresSettings>() ?? new();
            if (postgres.WriteLanes > 0) options.Database.UseWriteLanes(postgres.WriteLanes, postgres.WriteBatch, postgres.WritesSideBySide);
            if (postgres.ReadSlots > 0) options.Database.UseReadSlots(postgres.ReadSlots);
            if (postgres.ReadPipelineLanes > 0) options.Database.UseReadPipeline(postgres.ReadPipelineLanes, postgres.ReadPipelineBatch);
        }
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = MaxRequestBodyBytes;
            k.ConfigureEndpointDefaults(listen => listen.UseProblemBodies());
        });
        // ASP.NET Core logs several lines per request at Information (request started, endpoint,
        // result, finished): at thousands of requests a second that is most of the server's output and
        // a measurable share of its CPU. Warning and above, unless the operator sets the level
        // (Logging__LogLevel__Microsoft.AspNetCore=Information).
        if (builder.Configuration["Logging:LogLevel:Microsoft.AspNetCore"] is null)
            builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Services.AddSingleton(options.Database);
        builder.Services.AddSingleton(options.Clock);
        builder.Services.AddSingleton<IdempotentWriter>();
        builder.Services.ConfigureHttpJsonOptions(json => ConfigureJson(json.SerializerOptions));
        builder.Services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        // Two ways in: the APIs take HTTP Basic on every call, the support console (/console) a session
        // cookie. Each path knows only its own: a console cookie authenticates no API call (so a
        // forged cross-site request to the API carries no credentials), and the console answers a
        // missing session with its sign-in page, never with a Basic challenge.
        builder.Services.AddAuthentication(RequestScheme)
            .AddPolicyScheme(RequestScheme, null, o => o.ForwardDefaultSelector = http =>
                ConsolePaths.IsConsole(http.Request.Path) ? ConsoleSessions.Scheme : BasicAuthenticationHandler.SchemeName)
            .AddScheme<AuthenticationSchemeOptions, BasicAuthenticationHandler>(BasicAuthenticationHandler.SchemeName, null)
            .AddConsoleSessions();
        builder.Services.AddSupportConsole();
        builder.Services.AddAuthorization(o => o.AddLedgerPolicies());
        builder.Services.AddLedgerSettings();
        builder.Services.AddLedgerRateLimiting();
        builder.Services.AddLedgerApiReference();
        builder.Services.AddProblemDetails();
        builder.Services.AddLedgerLifecycle();
        builder.Services.AddOutboxSequencer();
        builder.Services.AddLedgerWebhooks();
        builder.Services.AddLedgerHealth();
        builder.AddLedgerObservability();

        var app = builder.Build();
        app.UseConsoleHeaders();
        var rejections = RejectedRequests.Listen(app.Services.GetRequiredService<System.Diagnostics.DiagnosticListener>());
        app.Lifetime.ApplicationStopped.Register(rejections.Dispose);
        app.UseLedgerErrors();
        app.UseConsoleErrors();
        app.Use((context, next) =>
        {
            // Kestrel enforces the limit while reading; this also refuses a declared oversize body
            // up front, on any server (the in-memory test server has no limit of its own).
            if (context.Request.ContentLength > MaxRequestBodyBytes)
                throw new BadHttpRequestException("Request body too large.", StatusCodes.Status413PayloadTooLarge);
            // PostgreSQL text cannot hold a NUL. Kestrel refuses one in the path itself but lets one in
            // the query through (other servers may let either through). The points-ledger read parses
            // its own parameters and answers in its spec's error body.
            if (context.Request.Path.Value?.Contains('\0', StringComparison.Ordinal) == true)
                throw LedgerException.Invalid("The path contains a NUL character (%00).");
            if (!context.Request.Path.StartsWithSegments(PointsLedgerApi.Path))
            {
                foreach (var (name, values) in context.Request.Query)
                {
                    if (name.Contains('\0', StringComparison.Ordinal) || values.Any(v => v?.Contains('\0', StringComparison.Ordinal) == true))
                        throw LedgerException.Invalid($"The query parameter {name.Replace("\0", "%00", StringComparison.Ordinal)} contains a NUL character (%00).");
                }
            }
            return next(context);
        });
        app.UseAuthentication();
        // After authentication, so each key has its own bucket; before authorization and the handlers.
        app.UseRateLimiter();
        app.UseAuthorization();
        // The console's forms; after authorization, so a token is checked against the signed-in key.
        app.UseAntiforgery();

        app.MapOpenApi("/openapi/{documentName}.json").AllowAnonymous();
        // The reference page works offline: Scalar's script is served from the package itself, and
        // its default fonts (fetched from Scalar's CDN) and telemetry are off.
        app.MapScalarApiReference("/docs", scalar => scalar
                .WithTitle("LoyaltyLedger API reference")
                .WithOpenApiRoutePattern("/openapi/{documentName}.json")
                .DisableDefaultFonts()
                .DisableTelemetry()
                .DisableAgent()
                .DisableMcp()
                .ExpandAllTags()
                .AddDocument("v1")
                .AddHttpAuthentication("Basic", _ => { }))
            .AllowAnonymous();
        app.MapLedgerHealth();
        app.MapLedgerMetrics();

        var v1 = app.MapGroup("/v1").RequireAuthorization(CallerClaims.Read);
        v1.MapProgramsApi().MapStoresApi().MapCustomersApi().MapGroupsApi().MapPostingsApi().MapLifecycleApi().MapEventsApi().MapExportsApi();
        v1.MapKeysApi().MapWebhooksApi().MapTiersApi();
        app.MapLoyaltyVaultApi(v1);
        app.MapPointsLedgerApi();
        app.MapSupportConsole();
        return app;
    }

    public static void ConfigureJson(System.Text.Json.JsonSerializerOptions json)
    {
        json.DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull;
        // A number is a JSON number (the web defaults also read "12" as 12): what the document
        // says an integer is, and what a generated client sends. Points and amounts that may be
        // strings have converters of their own.
        json.NumberHandling = JsonNumberHandling.Strict;
        json.RespectRequiredConstructorParameters = true;
        json.RespectNullableAnnotations = true;
        json.UnmappedMemberHandling = JsonUnmappedMemberHandling.Skip;
        json.Converters.Add(new JsonStringEnumConverter());
        json.Converters.Add(new NoNulStringConverter());
        json.Converters.Add(new IsoTimeJsonConverter());
    }
}
