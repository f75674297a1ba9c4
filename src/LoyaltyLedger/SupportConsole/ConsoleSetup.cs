using System.Net;
using System.Security.Cryptography;
using LoyaltyLedger.Server.Hosting;
using Microsoft.AspNetCore.Diagnostics;

namespace LoyaltyLedger.Server.SupportConsole;

/// <summary>The console's addresses.</summary>
public static class ConsolePaths
{
    public const string Root = "/console";
    public const string SignIn = "/console/signin";
    public const string SignOut = "/console/signout";
    public const string Stylesheet = "/console/assets/console.css";
    public const string Icon = "/console/assets/icon.svg";

    public static bool IsConsole(PathString path) => path.StartsWithSegments(Root, StringComparison.OrdinalIgnoreCase);

    /// <summary>A return address after sign-in: only a path inside the console, never another site.</summary>
    public static string SafeReturn(string? returnUrl) =>
        returnUrl is { Length: > 0 } url && url.StartsWith(Root, StringComparison.Ordinal) && !url.StartsWith("//", StringComparison.Ordinal)
            && !url.Contains('\\', StringComparison.Ordinal) && Uri.IsWellFormedUriString(url, UriKind.Relative)
            ? url
            : Root;
}

/// <summary>
/// The support console (<c>/console</c>): Razor components rendered on the server (static SSR, no
/// script at all), served by the ledger's own process, with its own cookie sessions beside the API's
/// HTTP Basic, antiforgery on every form, and a Content-Security-Policy that allows no script and
/// only the console's own stylesheet.
/// </summary>
public static class ConsoleSetup
{
    /// <summary>
    /// No script from anywhere, styles and images only from the console's own files (no inline
    /// style attributes either), forms only to this site, never in a frame.
    /// </summary>
    public const string ContentSecurityPolicy =
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

    public static IServiceCollection AddSupportConsole(this IServiceCollection services)
    {
        ConsoleKeyRing.Register(services);
        services.AddRazorComponents();
        services.AddAntiforgery(options =>
        {
            options.Cookie.Name = "ledger_console_af";
            options.Cookie.Path = ConsolePaths.Root;
            options.Cookie.SameSite = SameSiteMode.Strict;
            options.Cookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
            options.Cookie.HttpOnly = true;
        });
        return services;
    }

    /// <summary>
    /// The console's response headers, on every /console answer (errors included: they are set
    /// when the response starts, after any handler has cleared it).
    /// </summary>
    public static void UseConsoleHeaders(this WebApplication app) =>
        app.Use((context, next) =>
        {
            if (ConsolePaths.IsConsole(context.Request.Path))
            {
                var started = System.Diagnostics.Stopwatch.GetTimestamp();
                context.Response.OnStarting(() =>
                {
                    var headers = context.Response.Headers;
                    // The server's time to the page's first byte (a page is rendered whole before it is sent):
                    // what bench/console-pages.sh measures, and what a browser's developer tools show.
                    headers["Server-Timing"] = "app;dur=" + System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds
                        .ToString("0.0", System.Globalization.CultureInfo.InvariantCulture);
                    headers.ContentSecurityPolicy = ContentSecurityPolicy;
                    headers.XContentTypeOptions = "nosniff";
                    headers.XFrameOptions = "DENY";
                    // Console addresses name customers: they do not travel to other sites.
                    headers["Referrer-Policy"] = "no-referrer";
                    if (!context.Request.Path.StartsWithSegments("/console/assets", StringComparison.OrdinalIgnoreCase))
                        headers.CacheControl = "no-store";
                    return Task.CompletedTask;
                });
            }
            return next(context);
        });

    /// <summary>
    /// Errors under /console are pages, not API problem bodies: an unexpected exception, a refused
    /// form (antiforgery), a forbidden page or an unknown address each get a short HTML page with
    /// no detail of the server's internals. Placed inside the API's error handling, so it answers first.
    /// </summary>
    public static void UseConsoleErrors(this WebApplication app) =>
        app.UseWhen(context => ConsolePaths.IsConsole(context.Request.Path), console =>
        {
            console.UseExceptionHandler(new ExceptionHandlerOptions
            {
                ExceptionHandler = async context =>
                {
                    var error = context.Features.Get<IExceptionHandlerFeature>()?.Error;
                    var status = error switch
                    {
                        LedgerException le => le.Status,
                        BadHttpRequestException bad => bad.StatusCode,
                        _ => 500,
                    };
                    if (status >= 500)
                        context.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("LoyaltyLedger.Console").LogError(error, "Unhandled console error");
                    await ConsoleErrorPage.WriteAsync(context, status, error is LedgerException refusal ? refusal.Message : null);
                },
                SuppressDiagnosticsCallback = _ => true,
            });
            // Not UseStatusCodePages: it leaves alone an answer with a content type, and the framework's own
            // refusals (a form without a valid antiforgery token) set one and write nothing.
            console.Use(async (context, next) =>
            {
                await next(context);
                if (context.Response.StatusCode >= 400 && !context.Response.HasStarted)
                {
                    context.Response.ContentLength = null;
                    await ConsoleErrorPage.WriteAsync(context, context.Response.StatusCode, null);
                }
            });
        });

    public static void MapSupportConsole(this WebApplication app)
    {
        app.MapGet(ConsolePaths.Stylesheet, (HttpContext http) => ConsoleAssets.Serve(http, ConsoleAssets.Stylesheet))
            .AllowAnonymous().ExcludeFromDescription();
        app.MapGet(ConsolePaths.Icon, (HttpContext http) => ConsoleAssets.Serve(http, ConsoleAssets.Icon))
            .AllowAnonymous().ExcludeFromDescription();
        app.MapRazorComponents<App>()
            .RequireAuthorization(CallerClaims.Read)
            .WithMetadata(new ExcludeFromDescriptionAttribute());
    }
}

/// <summary>The console's static files, embedded in the executable (no wwwroot to deploy, nothing from a CDN).</summary>
public sealed class ConsoleAssets
{
    public static readonly ConsoleAssets Stylesheet = Load("console.css", "text/css; charset=utf-8");
    public static readonly ConsoleAssets Icon = Load("icon.svg", "image/svg+xml");

    private ConsoleAssets(byte[] content, string contentType)
    {
        Content = content;
        ContentType = contentType;
        Version = Convert.ToHexStringLower(SHA256.HashData(content))[..12];
    }

    public byte[] Content { get; }
    public string ContentType { get; }

    /// <summary>A hash of the content: pages link to <c>?v=</c> it, so a new build's file is fetched at once and an old one cached for good.</summary>
    public string Version { get; }

    public static string Url(string path, ConsoleAssets asset) => path + "?v=" + asset.Version;

    private static ConsoleAssets Load(string name, string contentType)
    {
        using var stream = typeof(ConsoleAssets).Assembly.GetManifestResourceStream("LoyaltyLedger.Server.SupportConsole.Assets." + name)
            ?? throw new InvalidOperationException($"The console asset {name} is not embedded.");
        using var buffer = new MemoryStream();
        stream.CopyTo(buffer);
        return new ConsoleAssets(buffer.ToArray(), contentType);
    }

    public static IResult Serve(HttpContext http, ConsoleAssets asset)
    {
        var etag = "\"" + asset.Version + "\"";
        http.Response.Headers.ETag = etag;
        http.Response.Headers.CacheControl = http.Request.Query["v"] == asset.Version ? "public, max-age=31536000, immutable" : "no-cache";
        if (http.Request.Headers.IfNoneMatch == etag) return Results.StatusCode(StatusCodes.Status304NotModified);
        return Results.Bytes(asset.Content, asset.ContentType);
    }
}

/// <summary>The console's error page: the status, a sentence for people, a way back; no internals.</summary>
public static class ConsoleErrorPage
{
    public static Task WriteAsync(HttpContext context, int status, string? detail)
    {
        var (title, text) = status switch
        {
            400 => ("The form could not be accepted",
                "It was not sent from a page of this console, or the page had expired. Go back, reload the page and try again."),
            403 => ("Not allowed", "The key you signed in with does not have the role this page needs."),
            404 => ("Not found", "There is nothing at this address in your organization."),
            405 => ("Not allowed", "This address does not take that kind of request."),
            409 or 422 => ("Refused", "The ledger refused the change."),
            429 => ("Too many requests", "Wait a moment and try again."),
            503 => ("Busy", "The ledger is busy; try again in a moment."),
            _ => ("Something went wrong", "The page could not be shown; nothing was changed. Try again, and tell the ledger's operators if it persists."),
        };
        context.Response.StatusCode = status;
        context.Response.ContentType = "text/html; charset=utf-8";
        var stylesheet = ConsoleAssets.Url(ConsolePaths.Stylesheet, ConsoleAssets.Stylesheet);
        var message = status < 500 && detail is not null ? WebUtility.HtmlEncode(detail) : WebUtility.HtmlEncode(text);
        return context.Response.WriteAsync(
            $"""
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>{WebUtility.HtmlEncode(title)} - LoyaltyLedger console</title><link rel="stylesheet" href="{stylesheet}"></head>
            <body><main class="page narrow"><h1>{WebUtility.HtmlEncode(title)}</h1><p class="error-status">Error {status}</p>
            <p>{message}</p><p><a href="{ConsolePaths.Root}">Back to the console</a></p></main></body></html>
            """);
    }
}
