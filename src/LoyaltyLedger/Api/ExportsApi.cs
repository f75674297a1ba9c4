using System.ComponentModel;
using LoyaltyLedger.Exports;
using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Storage;
using Microsoft.AspNetCore.Mvc;

namespace LoyaltyLedger.Server.Api;

/// <summary>The filters of a ledger export, as query parameters (all optional; they combine).</summary>
public sealed record LedgerExportQuery(
    [property: Description("Lines of events at or after this instant: ISO 8601 with seconds and a UTC offset, e.g. 2024-05-04T07:16:34.000Z.")]
    [FromQuery(Name = "from")] string? From,
    [property: Description("Lines of events before this instant (exclusive); must be after from.")]
    [FromQuery(Name = "to")] string? To,
    [property: Description("Only the lines of this customer's wallets (or give groupId).")]
    [FromQuery(Name = "customerId")] string? CustomerId,
    [property: Description("Only the lines of this user group's pooled wallets (or give customerId).")]
    [FromQuery(Name = "groupId")] string? GroupId,
    [property: Description("Only the lines of this program.")]
    [FromQuery(Name = "programId")] string? ProgramId,
    [property: Description("Only the lines of events of this name, e.g. TransactionAdd, PointsRedemption, PointsExpiry.")]
    [FromQuery(Name = "eventName")] string? EventName)
{
    public LedgerExportFilter ToFilter() => new()
    {
        From = QueryParameters.Time(From, "from"),
        To = QueryParameters.Time(To, "to"),
        CustomerId = QueryParameters.Long(CustomerId, "customerId"),
        GroupId = QueryParameters.Long(GroupId, "groupId"),
        ProgramId = QueryParameters.Long(ProgramId, "programId"),
        EventName = EventName,
    };
}

/// <summary>
/// The organization's ledger, one row per ledger line, streamed as CSV or NDJSON
/// (<see cref="LedgerExport"/>, which the <c>export</c> command uses too).
/// </summary>
public static class ExportsApi
{
    private const string Columns =
        "One row per ledger line, in (time, event id, line) order: eventId, entryId, time, eventName, displayName, ownerType (CUSTOMER or GROUP), " +
        "ownerId, programId, currency (empty for plain points), category, entryType, points (signed: a DEBIT is negative), balanceAfter, " +
        "billNumber, storeCode, tillCode, reason, relatedEventId, tier (the owner's tier in the program when the line was posted; empty when " +
        "the program has no tiers). Streamed as it is read, so it may be any length.";

    public static RouteGroupBuilder MapExportsApi(this RouteGroupBuilder v1)
    {
        var exports = v1.MapGroup("/exports").WithTags("Exports");
        exports.MapGet("/ledger.csv", ([AsParameters] LedgerExportQuery query, HttpContext http, LedgerDatabase db) =>
                ExportAsync(LedgerExportFormat.Csv, query, http, db))
            .Produces<Stream>(StatusCodes.Status200OK, LedgerExportFormats.CsvContentType)
            .Refuses(StatusCodes.Status404NotFound).ServedByReplicas().WithName("ExportLedgerCsv")
            .WithSummary("The organization's ledger lines as CSV (RFC 4180, with a header row).")
            .WithDescription(Columns + " Text cells that a spreadsheet would run as a formula (starting with =, +, -, @, a tab or a CR) " +
                             "are written with a leading apostrophe; numbers are written as numbers.");
        exports.MapGet("/ledger.ndjson", ([AsParameters] LedgerExportQuery query, HttpContext http, LedgerDatabase db) =>
                ExportAsync(LedgerExportFormat.Ndjson, query, http, db))
            .Produces<Stream>(StatusCodes.Status200OK, LedgerExportFormats.NdjsonContentType)
            .Refuses(StatusCodes.Status404NotFound).ServedByReplicas().WithName("ExportLedgerNdjson")
            .WithSummary("The organization's ledger lines as NDJSON (one JSON object per line).")
            .WithDescription(Columns + " Every property is present on every line (null where a line has none); points are strings with three decimals.");
        return v1;
    }

    /// <remarks>
    /// The filter is checked and the connection opened here, before the answer starts, so a bad
    /// window or an unknown customer is still a problem answer; <see cref="LedgerExportResult"/>
    /// then streams.
    /// </remarks>
    private static async Task<LedgerExportResult> ExportAsync(LedgerExportFormat format, LedgerExportQuery query, HttpContext http, LedgerDatabase db)
    {
        var filter = query.ToFilter();
        var export = await LedgerExport.OpenAsync(db, http.User.Caller().OrgId, filter, ConsistencyTokens.Read(http), http.RequestAborted);
        return new LedgerExportResult(export, format);
    }

    /// <summary>The streamed export: its content type and columns are declared on the endpoints (Produces), as a stream has no schema.</summary>
    internal sealed class LedgerExportResult(LedgerExport export, LedgerExportFormat format) : IResult
    {
        public async Task ExecuteAsync(HttpContext http)
        {
            await using (export)
            {
                http.Response.StatusCode = StatusCodes.Status200OK;
                http.Response.ContentType = format.ContentType();
                http.Response.Headers.ContentDisposition = $"attachment; filename=\"ledger.{format.FileExtension()}\"";
                try
                {
                    await export.WriteAsync(http.Response.Body, format, progress: null, http.RequestAborted);
                }
                catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
                {
                    // The client went away: the query is cancelled and nobody is left to answer.
                }
            }
        }
    }
}
