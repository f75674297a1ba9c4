using System.Text.Json;
using System.Text.RegularExpressions;
using LoyaltyLedger.Storage;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.Options;

namespace LoyaltyLedger.Server.Api;

/// <summary>
/// The native API's error body: an RFC 9457 problem with a stable <c>code</c>. Every refusal maps
/// to one; an unexpected exception is logged and answered 500 with no detail.
/// </summary>
public sealed record ApiProblem(string Type, string Title, int Status, string Code, string Detail);

/// <summary>
/// Every error answer of the service, whoever refuses the request: a handler (a
/// <see cref="LedgerException"/>), the framework (binding, JSON, routing's 404 and 405, 413, 415),
/// authentication, the rate limiter, or Kestrel itself (see <see cref="Hosting.RejectedRequests"/>).
/// Details say what is wrong in the client's terms (parameter names, JSON paths and JSON types),
/// never in the server's (.NET type names).
/// </summary>
public static partial class ErrorResponses
{
    public static ApiProblem Problem(int status, string code, string detail) =>
        new($"https://loyaltyledger.dev/errors/{code}", Title(status), status, code, detail);

    private static string Title(int status) => status switch
    {
        400 => "Bad request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not found",
        405 => "Method not allowed",
        409 => "Conflict",
        413 => "Payload too large",
        415 => "Unsupported media type",
        422 => "Unprocessable",
        429 => "Too many requests",
        408 => "Request timeout",
        411 => "Length required",
        414 => "URI too long",
        431 => "Request headers too large",
        503 => "Service unavailable",
        505 => "HTTP version not supported",
        _ => ReasonPhrases.GetReasonPhrase(status) is { Length: > 0 } phrase ? phrase : "Error",
    };

    public static Task WriteAsync(HttpContext context, ApiProblem problem)
    {
        context.Response.StatusCode = problem.Status;
        context.Response.ContentType = "application/problem+json";
        var options = context.RequestServices.GetRequiredService<IOptions<JsonOptions>>().Value.SerializerOptions;
        return context.Response.WriteAsync(JsonSerializer.Serialize(problem, options));
    }

    /// <summary>Maps exceptions that escape a handler to documented errors.</summary>
    public static void UseLedgerErrors(this WebApplication app)
    {
        app.UseExceptionHandler(new ExceptionHandlerOptions
        {
            ExceptionHandler = async context =>
            {
                var feature = context.Features.Get<IExceptionHandlerFeature>();
                var problem = Classify(feature?.Error, context, feature?.Endpoint);
                if (problem.Status >= 500)
                    context.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("LoyaltyLedger").LogError(feature?.Error, "Unhandled error");
                await WriteAsync(context, problem);
            },
            // A refused request (a 4xx: an insufficient balance, a duplicate bill, bad input) is an
            // answer, not a failure of the server: the middleware's own "unhandled exception" log of it,
            // with a stack trace per refused request, would bury real errors and cost CPU under load.
            // Errors (5xx) are logged above.
            SuppressDiagnosticsCallback = _ => true,
        });
        // Whatever sets an error status without a body (routing's 404 and 405, a body the framework
        // could not read) gets the same problem body as everything else.
        app.UseStatusCodePages(async context =>
        {
            var http = context.HttpContext;
            if (http.Response.HasStarted || http.Response.ContentLength > 0 || http.Response.ContentType is not null) return;
            await WriteAsync(http, ForStatus(http.Request.Method, http.Request.PathBase + http.Request.Path,
                http.Request.ContentType, http.Response.Headers.Allow.ToString(), http.Response.StatusCode));
        });
    }

    /// <summary>The code and detail of an error status set without a body.</summary>
    public static ApiProblem ForStatus(string? method, string? path, string? contentType, string? allow, int status) => status switch
    {
        400 => Problem(400, ErrorCodes.InvalidRequest,
            "The request is malformed and could not be read (for example a NUL or a space in the path, a malformed header, or a broken body)."),
        404 => Problem(404, "not_found", $"There is no resource at {path}."),
        405 => Problem(405, "method_not_allowed", string.IsNullOrEmpty(allow)
            ? $"{method} is not allowed on {path}."
            : $"{method} is not allowed on {path}; it allows {allow} (see the Allow header)."),
        408 => Problem(408, "request_timeout", "The request did not arrive in time; send it again."),
        411 => Problem(411, "length_required", "Send a Content-Length header (or a chunked body) with the request body."),
        413 => Problem(413, "payload_too_large", $"The request body is larger than {Hosting.LedgerServer.MaxRequestBodyBytes} bytes."),
        414 => Problem(414, "uri_too_long", "The request target (path and query) is too long."),
        415 => Problem(415, "unsupported_media_type", string.IsNullOrEmpty(contentType)
            ? "Send the body as JSON with the header Content-Type: application/json (the request had no Content-Type)."
            : $"Send the body as JSON with the header Content-Type: application/json (the request had Content-Type: {contentType})."),
        431 => Problem(431, "headers_too_large", "The request headers are too large."),
        505 => Problem(505, "http_version_not_supported", "Send the request as HTTP/1.1 or HTTP/2."),
        >= 400 and < 500 => Problem(status, ErrorCodes.InvalidRequest, "The request cannot be served as sent."),
        _ => Problem(status, "internal_error", "An unexpected error occurred; nothing was written."),
    };

    public static ApiProblem Classify(Exception? error, HttpContext context, Endpoint? endpoint = null)
    {
        switch (error)
        {
            case LedgerException le:
                return Problem(le.Status, le.Code, le.Message);
            case JsonException json:
                return FromJson(json, context, endpoint);
            case BadHttpRequestException bad:
                for (Exception? inner = bad.InnerException; inner is not null; inner = inner.InnerException)
                    if (inner is JsonException json) return FromJson(json, context, endpoint);
                return bad.StatusCode == 400
                    ? Problem(400, ErrorCodes.InvalidRequest, BindingDetail(bad.Message))
                    : ForStatus(context.Request.Method, context.Request.PathBase + context.Request.Path, context.Request.ContentType,
                        context.Response.Headers.Allow.ToString(), bad.StatusCode);
            case OverflowException:
                return Problem(400, ErrorCodes.InvalidPoints, "A quantity is out of range.");
            case System.Data.Common.DbException db when context.RequestServices.GetService<LedgerDatabase>()?.Dialect is { } dialect
                                                        && (dialect.IsTransient(db) || dialect.IsCommitOutcomeUnknown(db)):
                // A read has no Idempotency-Key to name, and wrote nothing whatever happened.
                var read = HttpMethods.IsGet(context.Request.Method) || HttpMethods.IsHead(context.Request.Method);
                if (dialect.IsTransient(db))
                    return Problem(503, "busy", read ? "The ledger is busy; retry the request." : "The ledger is busy; retry with the same Idempotency-Key.");
                // The connection lost, perhaps while committing: a write may have been committed, so
                // this answer must not say that nothing was.
                return Problem(500, "internal_error", read
                    ? "The connection to the database was lost; retry the request."
                    : "The connection to the database was lost; a write may have been committed. Retry with the same Idempotency-Key: it answers as the first time if it was.");
            default:
                return Problem(500, "internal_error", "An unexpected error occurred; nothing was written.");
        }
    }

    private static ApiProblem FromJson(JsonException json, HttpContext context, Endpoint? endpoint)
    {
        var property = JsonErrors.Name(json.Path);
        return json switch
        {
            JsonValueException value => Problem(400, value.Code, $"{property} must be {value.Expected}."),
            PointsFormatException points => Problem(400, ErrorCodes.InvalidPoints, $"{property}: {points.Message}."),
            _ => Problem(400, ErrorCodes.InvalidJson, JsonErrors.Describe(json,
                endpoint?.Metadata.GetMetadata<IAcceptsMetadata>()?.RequestType,
                context.RequestServices.GetRequiredService<IOptions<JsonOptions>>().Value.SerializerOptions)),
        };
    }

    // The minimal-API binder's messages name the handler's parameter with its .NET type
    // ("Nullable<DateTimeOffset> asOf"); these keep the name and say what is wrong in HTTP terms.
    [GeneratedRegex("^Failed to bind parameter \"(?:[^\"]* )?(?<name>[A-Za-z0-9_]+)\" from \"(?<value>.*)\"\\.$", RegexOptions.Singleline)]
    private static partial Regex BindFailed();

    [GeneratedRegex("^Required parameter \"(?:[^\"]* )?(?<name>[A-Za-z0-9_]+)\" was not provided from (?<source>.*)\\.$", RegexOptions.Singleline)]
    private static partial Regex RequiredMissing();

    private static string BindingDetail(string message)
    {
        if (BindFailed().Match(message) is { Success: true } bind)
            return $"{bind.Groups["name"].Value} has a value that is not valid here: \"{bind.Groups["value"].Value}\".";
        if (RequiredMissing().Match(message) is { Success: true } missing)
            return missing.Groups["source"].Value.Contains("body", StringComparison.OrdinalIgnoreCase)
                ? "The request needs a JSON body."
                : $"{missing.Groups["name"].Value} is required.";
        if (message.StartsWith("Implicit body inferred", StringComparison.Ordinal)) return "The request needs a JSON body.";
        if (message.StartsWith("Failed to read parameter", StringComparison.Ordinal)) return "The body could not be read as JSON.";
        return NamesDotNet(message) ? "The request is malformed." : message;
    }

    /// <summary>True when a message names .NET types or namespaces, which no error detail may show.</summary>
    public static bool NamesDotNet(string text) => DotNetNames().IsMatch(text);

    [GeneratedRegex(@"System\.|Microsoft\.|LoyaltyLedger\.|Nullable|`[0-9]|\b(U?Int(16|32|64)|DateTimeOffset|DateTime|TimeSpan|Decimal|Double|Single|Boolean|String|IReadOnlyList|IEnumerable|IList|List<|Dictionary<|Exception)\b")]
    private static partial Regex DotNetNames();
}
