using Microsoft.AspNetCore.Http.HttpResults;
using LoyaltyLedger.PointsLedger;
using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Server.Api;

/// <summary>
/// <c>GET /v2/pointsLedger/getCustomerLedgerInfo</c>, wire-compatible with the points-ledger spec:
/// its parameter names and spellings, its response fields and formats, and its error body
/// <c>{"errors":[{"code":N,"message":"..."}],"warnings":[]}</c> instead of the native problem body.
/// </summary>
public static class PointsLedgerApi
{
    public const string Path = "/v2/pointsLedger/getCustomerLedgerInfo";

    public static IEndpointRouteBuilder MapPointsLedgerApi(this IEndpointRouteBuilder app)
    {
        app.MapGet(Path, GetCustomerLedgerInfoAsync)
            .RequireAuthorization(CallerClaims.Read)
            .ServedByReplicas()
            .WithName("GetCustomerLedgerInfo")
            .WithTags("Points ledger")
            .WithSummary("The points ledger of a customer or a user group (type=USERGROUP2), a page of events at a time.")
            .Produces<LedgerResponse>(StatusCodes.Status200OK, "application/json")
            .Refuses(StatusCodes.Status400BadRequest, StatusCodes.Status404NotFound)
            .RefusesWithLedgerErrors()
            .AddOpenApiOperationTransformer(PointsLedgerParameters.DescribeAsync)
            .WithSpecExample("points-ledger-customer.json", "A customer's ledger with alternate currencies (the spec's first example)");
        return app;
    }

    /// <remarks>
    /// Parameters are read from the raw query string rather than bound, so that a malformed value is
    /// answered with the spec's codes, never with the framework's binding error.
    /// </remarks>
    private static async Task<Results<WrittenPage<LedgerResponse>, JsonHttpResult<LedgerErrorBody>>> GetCustomerLedgerInfoAsync(HttpContext http, LedgerDatabase db, ILoggerFactory loggers)
    {
        try
        {
            var query = LedgerQueryParser.Parse(name => QueryValue(http, name));
            var consistency = ConsistencyTokens.TryRead(http, out var tokenProblem)
                ?? throw new PointsLedgerException(PointsLedgerErrors.InvalidParameter, tokenProblem!, 400);
            using var activity = LoyaltyLedger.Telemetry.LedgerTelemetry.Source.StartActivity("read points-ledger");
            activity?.SetTag("ledger.org_id", http.User.Caller().OrgId);
            var response = await LedgerReader.ReadAsync(db, http.User.Caller().OrgId, query, consistency, http.RequestAborted);
            activity?.SetTag("ledger.read.entries", response.LedgerEntries.Count);
            return new WrittenPage<LedgerResponse>(response, LedgerResponseWriter.Write, LedgerJson.Options.Encoder);
        }
        catch (PointsLedgerException ex)
        {
            return Error(ex.Status, ex.Code, ex.Message);
        }
        catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
        {
            throw;
        }
        catch (System.Data.Common.DbException ex) when (db.Dialect.IsTransient(ex))
        {
            return Error(503, 503, "The ledger is busy; retry the request.");
        }
        catch (Exception ex)
        {
            loggers.CreateLogger("LoyaltyLedger.PointsLedger").LogError(ex, "Points-ledger read failed");
            return Error(500, 500, "An unexpected error occurred.");
        }
    }

    /// <summary>A query parameter; one holding a NUL (which PostgreSQL text cannot hold) is a malformed value on both databases.</summary>
    private static string? QueryValue(HttpContext http, string name) =>
        !http.Request.Query.TryGetValue(name, out var values) ? null
        : values.ToString() is var text && text.Contains('\0', StringComparison.Ordinal)
            ? throw PointsLedgerException.Invalid(name, text.Replace("\0", "%00", StringComparison.Ordinal), "no NUL characters")
            : text;

    private static JsonHttpResult<LedgerErrorBody> Error(int status, int code, string message) =>
        TypedResults.Json(new LedgerErrorBody([new LedgerError(code, message)], []), LedgerJson.Options, statusCode: status);
}
