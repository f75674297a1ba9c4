using System.Text.Json;
using LoyaltyLedger.Storage;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.Extensions.Options;

namespace LoyaltyLedger.Server.Api;

/// <summary>
/// The native API's error body: an RFC 9457 problem with a stable <c>code</c>. Every refusal maps
/// to one; an unexpected exception is logged and answered 500 with no detail.
/// </summary>
public sealed record ApiProblem(string Type, string Title, int Status, string Code, string Detail);

public static class ErrorResponses
{
    public static ApiProblem Problem(int status, string code, string detail) =>
        new($"https://loyaltyledger.dev/errors/{code}", Title(status), status, code, detail);

    private static string Title(int status) => status switch
    {
        400 => "Bad request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not found",
        409 => "Conflict",
        413 => "Payload too large",
        422 => "Unprocessable",
        429 => "Too many requests",
        _ => "Error",
    };

    public static Task WriteAsync(HttpContext context, ApiProblem problem)
    {
        context.Response.StatusCode = problem.Status;
        context.Response.ContentType = "application/problem+json";
        var options = context.RequestServices.GetRequiredService<IOptions<JsonOptions>>().Value.SerializerOptions;
        return context.Response.WriteAsync(JsonSerializer.Serialize(problem, options));
    }

    /// <summary>Maps exceptions that escape a handler to documented errors.</summary>
    public static void UseLedgerErrors(this WebApplication app) => app.UseExceptionHandler(new ExceptionHandlerOptions
    {
        ExceptionHandler = async context =>
        {
            var error = context.Features.Get<IExceptionHandlerFeature>()?.Error;
            var problem = Classify(error);
            if (problem.Status >= 500)
                context.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("LoyaltyLedger").LogError(error, "Unhandled error");
            await WriteAsync(context, problem);
        },
        // A refused request (a 4xx: an insufficient balance, a duplicate bill, bad input) is an
        // answer, not a failure of the server: the middleware's own "unhandled exception" log of it,
        // with a stack trace per refused request, would bury real errors and cost CPU under load.
        // Errors (5xx) are logged above.
        SuppressDiagnosticsCallback = _ => true,
    });

    public static ApiProblem Classify(Exception? error)
    {
        switch (error)
        {
            case LedgerException le:
                return Problem(le.Status, le.Code, le.Message);
            case BadHttpRequestException bad:
                for (Exception? inner = bad; inner is not null; inner = inner.InnerException)
                {
                    if (inner is PointsFormatException pf) return Problem(400, ErrorCodes.InvalidPoints, pf.Message);
                    if (inner is JsonException je) return Problem(400, ErrorCodes.InvalidJson, "The body is not valid JSON for this call: " + je.Message);
                }
                return bad.StatusCode switch
                {
                    413 => Problem(413, "payload_too_large", $"The request body is larger than {Hosting.LedgerServer.MaxRequestBodyBytes} bytes."),
                    415 => Problem(415, "unsupported_media_type", "Send the body as application/json."),
                    _ => Problem(400, ErrorCodes.InvalidRequest, bad.Message),
                };
            case OverflowException:
                return Problem(400, ErrorCodes.InvalidPoints, "A quantity is out of range.");
            case System.Data.Common.DbException db when LedgerDatabase.IsTransient(db):
                return Problem(503, "busy", "The ledger is busy; retry with the same Idempotency-Key.");
            default:
                return Problem(500, "internal_error", "An unexpected error occurred; nothing was written.");
        }
    }
}
